"""The team link (`make share`: ui/share_app.py) in chromium: the login, and what each role sees and may do.

One shared-mode server for this file, on its own runs folder with three users and one data root.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest
import websockets.exceptions
import websockets.sync.client

from core import audit, jobs, runs, serving, users
from tests.browser.conftest import browser_root, streamlit_server
from tests.browser.helpers import choose, settle

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PASSWORDS = {"ada": "admin password 1", "olga": "operator password", "vic": "viewer password"}
ROLES = {"ada": "admin", "olga": "operator", "vic": "viewer"}


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    root = browser_root(tmp_path_factory, "shared")
    for name, role in ROLES.items():
        users.add(root, name, role, PASSWORDS[name])
    data_root = tmp_path_factory.mktemp("data_root")
    (data_root / "statements.csv").write_text("text,label\n" + "".join(f"statement {i},{'ab'[i % 2]}\n" for i in range(40)))
    three_class = next(s.run_id for s in runs.list_runs(root) if s.name == "three-class")
    with streamlit_server("ui/share_app.py", root, tmp_path_factory.getbasetemp(),
                          **{serving.DATA_ROOTS_ENV: str(data_root)}) as url:
        yield url, root, data_root, three_class


def log_in(page, url: str, name: str, next_path: str = "/") -> None:
    page.goto(f"{url}/tuneboard/login?next={quote(next_path, safe='/')}")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Log in").click()
    page.get_by_text(f"Logged in as {name} ({ROLES[name]})").wait_for()
    settle(page)


def nav_links(page) -> list[str]:
    # each link is "<icon name>\n\n<title>"
    return [text.split("\n")[-1].strip() for text in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]


def test_without_a_session_nothing_is_served_and_a_wrong_password_says_so(shared_server, page, shots):
    url, _, _, three_class = shared_server
    page.goto(f"{url}/evaluation?run={three_class}")
    assert "/tuneboard/login?next=" in page.url  # the deep link is kept for after the login
    page.get_by_role("heading", name="Tuneboard").wait_for()
    shots(page, "30_login")
    page.get_by_label("User name").fill("vic")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("alert").filter(has_text="Wrong user name or password").wait_for()
    shots(page, "31_login_refused")
    # not only the page: the app's websocket and its endpoints refuse a client without a session
    with pytest.raises(websockets.exceptions.InvalidStatus):
        websockets.sync.client.connect(url.replace("http", "ws") + "/_stcore/stream", open_timeout=10).close()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/_stcore/host-config", timeout=10)
    assert refused.value.code == 401


def test_a_viewer_reads_the_evaluation_but_gets_no_launch_or_change_controls(shared_server, page, shots):
    url, root, _, three_class = shared_server
    log_in(page, url, "vic", f"/evaluation?run={three_class}")
    page.get_by_role("heading", name="Evaluation").wait_for()
    assert f"run={three_class}" in page.url
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    assert set(nav_links(page)) == {"Training", "Evaluation", "Compare", "Sweeps", "Deploy"}  # no Data, no Strategy
    page.get_by_role("tab", name=re.compile("Predict a file")).click()
    page.get_by_text("To upload you need the operator role, and vic is a viewer").wait_for()
    assert page.locator('[data-testid="stFileUploaderDropzoneInput"]').count() == 0
    shots(page, "32_viewer_evaluation")
    page.goto(f"{url}/training?run={three_class}")
    page.get_by_role("heading", name="Training").wait_for()
    settle(page, 800)
    for control in ("Cancel", "Resume", "Delete"):
        assert page.get_by_role("button", name=control).count() == 0, control
    shots(page, "33_viewer_training")
    page.goto(f"{url}/deploy?run={three_class}")
    page.get_by_role("heading", name="Deploy").wait_for()
    page.get_by_text("Viewing only: making variants needs the operator role.").wait_for()
    assert page.get_by_role("button", name="Make the ticked variants").count() == 0
    assert all(a["user"] != "vic" for a in audit.read(root))


def test_an_operator_launches_a_run_that_is_theirs(shared_server, page, shots):
    url, root, _, _ = shared_server
    log_in(page, url, "olga", "/strategy")
    page.get_by_role("heading", name="Strategy").first.wait_for()
    assert {"Data", "Strategy"} <= set(nav_links(page))
    page.get_by_label("Run name", exact=True).fill("olgas-run")
    page.get_by_label("Run name", exact=True).press("Enter")
    settle(page)
    shots(page, "34_operator_launch")
    page.get_by_role("button", name="Start training").click()
    page.get_by_role("heading", name="Training").wait_for()
    run_id = re.search(r"run=([^&]+)", page.url).group(1)
    assert jobs.owner_of(root, run_id) == "olga"
    assert ("olga", "train", run_id) in [(a["user"], a["action"], a["target"]) for a in audit.read(root)]
    page.get_by_role("button", name="Cancel").click()  # her own run: she may stop it
    page.get_by_role("button", name="Resume").or_(page.get_by_text("Cancelled")).first.wait_for()
    page.get_by_text(re.compile(r"Queue and history")).click()
    table = page.locator('[data-testid="stDataFrame"]').first
    table.locator("td", has_text=re.compile("^olga$")).first.wait_for(state="attached")  # the queue says who started it
    shots(page, "35_operator_queue")
    assert ("olga", "cancel", run_id) in [(a["user"], a["action"], a["target"]) for a in audit.read(root)]


def test_an_admin_reads_server_paths_only_under_the_data_roots_and_logs_out(shared_server, page, shots):
    url, _, data_root, _ = shared_server
    log_in(page, url, "ada", "/")  # the Data page is the app's main page
    page.get_by_role("heading", name="Data").wait_for()
    page.get_by_text("Path on this machine").click()
    settle(page)
    box = page.get_by_label("File or folder", exact=True)
    box.fill("/etc/passwd")
    box.press("Enter")
    alert = page.locator('[data-testid="stAlertContentError"]').first
    alert.wait_for()
    assert f"/etc/passwd is outside the data folders this dashboard may read ({data_root})" in alert.inner_text()
    assert "root:" not in page.content()  # nothing of the file was shown
    shots(page, "36_admin_path_refused")
    box.fill(str(data_root / "statements.csv"))
    box.press("Enter")
    settle(page, 1000)
    choose(page, "Label", "label")
    page.locator('[data-testid="stMetricValue"]', has_text=re.compile(r"^32$")).wait_for()  # 40 rows: 32 train
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    page.get_by_role("button", name="Log out").click()
    page.get_by_text("Logged out: your sessions on every device have ended").wait_for()
    page.goto(f"{url}/training")
    assert "/tuneboard/login" in page.url  # the cookie this browser still holds no longer works
