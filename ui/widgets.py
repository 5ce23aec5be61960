"""Streamlit widgets generated from config field metadata (help text, bounds, choices)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui.forms import defaults, key, number_bounds, widget_kind

KEPT_PREFIXES = ("cfg.", "sweep.")  # the config form and the Strategy page's sweep builder (no button keys there)


def keep_draft() -> None:
    """Streamlit forgets a widget's value when a page run doesn't draw it (another page, a hidden
    strategy option). Re-assigning the ``cfg.*`` (and ``sweep.*``) keys once per run makes them plain session
    values that survive; the router calls this before any page draws."""
    for k in [k for k in st.session_state if str(k).startswith(KEPT_PREFIXES)]:
        st.session_state[k] = st.session_state[k]


def draft_values() -> dict[str, Any]:
    """The draft config: defaults overlaid with every ``cfg.*`` value set in this session."""
    values = defaults()
    values.update({k: v for k, v in st.session_state.items() if str(k).startswith("cfg.")})
    return values


def field_widget(spec: dict[str, Any], section: str, container: Any = st, *, widget_key: str | None = None) -> Any:
    """Draw the widget of one config field (value kept in ``st.session_state[cfg.<section>.<name>]``).

    ``widget_key``: keep it under that key instead, outside the run-config draft (a compression method's options).
    """
    k = widget_key or key(section, spec["name"])
    kind = widget_kind(spec)
    if k not in st.session_state:
        default = spec["default"] if widget_key else defaults().get(k, spec["default"])
        st.session_state[k] = float(default) if kind == "float" and default is not None else default
    elif kind == "float" and isinstance(st.session_state[k], int):
        st.session_state[k] = float(st.session_state[k])
    label = spec["name"].replace("_", " ")
    help_text = spec.get("help")
    if kind == "choice":
        return container.selectbox(label, spec["choices"], key=k, help=help_text)
    if kind == "bool":
        return container.checkbox(label, key=k, help=help_text)
    if kind in ("int", "optional_int"):
        return container.number_input(label, key=k, step=1, help=help_text, placeholder="all" if kind == "optional_int" else None,
                                      **number_bounds(spec))
    if kind == "float":
        return container.number_input(label, key=k, help=help_text, **number_bounds(spec))
    if kind == "list":
        if isinstance(st.session_state[k], list):
            st.session_state[k] = ", ".join(st.session_state[k])
        return container.text_input(label, key=k, help=help_text + " (comma-separated)")
    if st.session_state[k] is None:
        st.session_state[k] = ""
    return container.text_input(label, key=k, help=help_text)
