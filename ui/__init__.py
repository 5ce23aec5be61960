"""UI-only helpers for the dashboard: reading runs for display, chart builders, selection parsing,
form <-> config mapping. Nothing here imports streamlit, so the tests call it without a browser."""
