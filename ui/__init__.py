"""UI helpers for the dashboard: reading runs for display, chart builders, selection parsing, form <->
config mapping. Only ui.app_state and ui.widgets import streamlit; the rest is plain Python that tests
call without a browser."""
