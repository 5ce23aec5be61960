"""Single sign-on on the team link, in chromium, against a local OpenID Connect provider.

Streamlit's own st.login code signs the user in at tests/support/mock_oidc.py exactly as at Google
or Keycloak; users.yaml gives the role, by e-mail address or by group; an identity it does not name
gets no access.
"""

from __future__ import annotations

import pytest

from core import serving, users
from tests.browser.conftest import browser_root, free_port, streamlit_server
from tests.browser.helpers import settle
from tests.support.mock_oidc import running_provider

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def sso_server(tmp_path_factory):
    root = browser_root(tmp_path_factory, "sso")
    users.add(root, "erin@example.com", "operator", None)
    users.set_group(root, "ml-viewers", "viewer")
    port = free_port()
    with running_provider() as provider:
        secrets = tmp_path_factory.mktemp("secrets") / "secrets.toml"
        secrets.write_text(f"""[auth]
redirect_uri = "http://127.0.0.1:{port}/oauth2callback"
cookie_secret = "a-long-random-cookie-secret-for-the-test-only"
client_id = "{provider.client_id}"
client_secret = "{provider.client_secret}"
server_metadata_url = "{provider.base}/.well-known/openid-configuration"
""")
        with streamlit_server("ui/share_app.py", root, tmp_path_factory.getbasetemp(), port=port,
                              **{serving.SECRETS_ENV: str(secrets)}) as url:
            yield url, provider


def sign_on(page, url: str) -> None:
    page.goto(f"{url}/training")
    assert "/tuneboard/login" in page.url  # no session: the login page, now with single sign-on
    page.get_by_role("link", name="Log in with single sign-on").click()


def test_an_address_in_the_users_file_signs_on_with_its_role(sso_server, page, shots):
    url, provider = sso_server
    provider.identity = {"email": "erin@example.com", "name": "Erin"}
    page.goto(f"{url}/tuneboard/login")
    shots(page, "37_login_with_sso")
    sign_on(page, url)
    page.get_by_text("Logged in as erin@example.com (operator)").wait_for()
    settle(page)
    nav = [t.split("\n")[-1].strip() for t in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]
    assert "Strategy" in nav  # an operator's pages
    shots(page, "38_sso_operator")


def test_a_group_gives_its_role_and_an_unknown_identity_gets_no_access(sso_server, browser, shots):
    url, provider = sso_server
    viewer = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    provider.identity = {"email": "gus@example.com", "groups": ["ml-viewers", "staff"]}
    sign_on(viewer, url)
    viewer.get_by_text("Logged in as gus@example.com (viewer)").wait_for()
    settle(viewer)
    nav = [t.split("\n")[-1].strip() for t in viewer.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]
    assert set(nav) == {"Training", "Evaluation", "Compare", "Sweeps", "Deploy"}
    viewer.context.close()

    stranger = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    provider.identity = {"email": "mallory@example.com", "groups": ["staff"]}
    sign_on(stranger, url)
    stranger.get_by_role("alert").filter(has_text="signed in as mallory@example.com").wait_for()
    assert "python -m core users add mallory@example.com --role viewer --sso" in stranger.content()
    shots(stranger, "39_sso_no_role")
    stranger.context.close()
