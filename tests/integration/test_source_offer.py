"""The AGPL source offer: the footer links /source, which serves a tarball of the running
code without virtualenvs, instance data, version control or secrets; BUSANPAY_SOURCE_URL
points the footer (and /source) elsewhere."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

from operations.source import build_tarball

ROOT = Path(__file__).resolve().parents[2]


def members(body: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_source_serves_the_running_code_as_a_tarball(client):
    res = client.get("/source")
    assert res.status_code == 200 and res.mimetype == "application/gzip"
    assert "busanpay-source.tar.gz" in res.headers["Content-Disposition"]
    files = members(res.get_data())
    for name in ("app.py", "operations/source.py", "pyproject.toml", "README.md",
                 "migrations/env.py", "templates/base.html"):
        assert files[f"busanpay/{name}"] == (ROOT / name).read_bytes(), name
    assert not [n for n in files if n.split("/")[1] in (".venv", "instance", ".git")
                or "__pycache__" in n or n.endswith((".pyc", ".sqlite3"))]


def test_the_footer_links_the_source_offer(client):
    page = client.get("/login").get_data(as_text=True)
    assert 'href="/source"' in page


def test_secrets_and_local_state_are_left_out(tmp_path):
    root = tmp_path / "deploy-root"
    for name, text in {"app.py": "print('hi')", "deploy/busanpay.env.example": "X=",
                       ".env": "BUSANPAY_SECRET_KEY=s3cret", "deploy/prod.env": "K=v",
                       "instance/busanpay.sqlite3": "db", "instance/keys/tls.key": "k",
                       ".venv/lib/x.py": "v", ".git/config": "g", "certs/site.pem": "p",
                       "pkg/__pycache__/m.cpython-311.pyc": "c", "nightly.backup": "b",
                       "pkg/mod.py": "x = 1"}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "link.py").symlink_to(tmp_path / "outside.py")
    (tmp_path / "outside.py").write_text("secret = 1")
    body = build_tarball(root)
    assert sorted(members(body)) == ["busanpay/app.py", "busanpay/deploy/busanpay.env.example",
                                     "busanpay/pkg/mod.py"]
    assert build_tarball(root) == body  # reproducible


def test_a_configured_source_url_is_linked_and_source_redirects_there(app_config):
    from app import create_app

    url = "https://code.busan.example/busanpay/tree/v1.4.2"
    app = create_app({**app_config, "source_url": url})
    try:
        client = app.test_client()
        assert f'href="{url}"' in client.get("/login").get_data(as_text=True)
        res = client.get("/source")
        assert res.status_code == 302 and res.headers["Location"] == url
    finally:
        app.extensions["busanpay"].close()
