"""Where the tests find the repository and the checked-in fixtures (one place, whatever a test's folder)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "streamlit_app.py"
FIXTURES = REPO / "tests" / "fixtures"
DATA_FIXTURES = FIXTURES / "data"
ARTIFACTS = REPO / "test-artifacts"  # screenshots, kept for a person to look at
