"""The leak scanner the scenarios use, and the bulk writer's diffs of secret-class files."""

import base64
import os
import sys
from pathlib import Path
from urllib.parse import quote

from conftest import REPO
from leaks import describe, find_leaks, mask

sys.path.insert(0, str(REPO / "collections"))
from ansible_collections.kickstack.core.plugins.module_utils.bulk import Output, sync_tree  # noqa: E402

SECRET = "s3cr/t+Value=with:odd&chars"
SECRETS = {"rabbitmq_nova_password": SECRET, "short": "abc", "deploy_ssh_public_key": "ssh-ed25519 AAAAC3Nz kickstack"}


def test_a_planted_secret_is_found_by_name_and_line():
    text = "ok: [ctl01]\nchanged: [ctl01] => {\"password\": \"" + SECRET + "\"}\n"
    assert find_leaks(text, SECRETS) == [("rabbitmq_nova_password", 2)]


def test_url_quoted_and_base64_forms_are_found():
    url = "transport_url = rabbit://nova:" + quote(SECRET, safe="") + "@10.60.0.11:5672//nova"
    assert find_leaks("x\n" + url, SECRETS) == [("rabbitmq_nova_password", 2)]
    for user in ("a", "ab", "abc", "nova"):  # every byte offset inside the blob
        header = "Authorization: Basic " + base64.b64encode(f"{user}:{SECRET}".encode()).decode()
        assert find_leaks(header, SECRETS) == [("rabbitmq_nova_password", 1)], user


def test_masked_output_short_values_and_public_keys_are_not_leaks():
    text = "a\n" + SECRET + " and " + quote(SECRET, safe="") + "\n"
    masked = mask(text, SECRETS)
    assert SECRET not in masked and "<secret rabbitmq_nova_password>" in masked
    assert find_leaks(masked, SECRETS) == []
    assert find_leaks("abc ssh-ed25519 AAAAC3Nz kickstack", SECRETS) == []
    assert find_leaks("password: ********", SECRETS) == []


def test_the_failure_message_names_secrets_not_values():
    message = describe(find_leaks("x\n" + SECRET, SECRETS))
    assert "rabbitmq_nova_password at line 2" in message
    assert SECRET not in message


# --------------------------------------------------------------------------- bulk diffs
def _diff_text(report):
    return "".join(d["before"] + d["after"] for d in report.diffs)


def test_bulk_hides_the_old_root_hash_when_the_new_kickstart_has_none(tmp_path):
    old = "rootpw --iscrypted $6$oldsalt$oldhashvalue\n"
    (tmp_path / "ks").mkdir()
    (tmp_path / "ks" / "n1.ks").write_text(old)
    os.chmod(tmp_path / "ks" / "n1.ks", 0o600)
    report = sync_tree(str(tmp_path), {"ks/n1.ks": Output("rootpw --lock\n", secret=False)},
                       ["ks/*.ks"], check=True, diff=True)
    assert report.changed == ["ks/n1.ks"]
    assert "oldhashvalue" not in _diff_text(report)
    assert "content hidden" in report.diffs[0]["after"]


def test_bulk_hides_an_old_private_file_outside_the_secret_globs(tmp_path):
    (tmp_path / "x.cfg").write_text("token=oldsecretvalue\n")
    os.chmod(tmp_path / "x.cfg", 0o600)
    report = sync_tree(str(tmp_path), {"x.cfg": Output("plain\n")}, ["*.cfg"], check=True, diff=True)
    assert "oldsecretvalue" not in _diff_text(report)


def test_bulk_still_shows_plain_files(tmp_path):
    (tmp_path / "x.cfg").write_text("old line\n")
    os.chmod(tmp_path / "x.cfg", 0o644)
    report = sync_tree(str(tmp_path), {"x.cfg": Output("new line\n")}, ["*.cfg"], check=True, diff=True)
    assert report.diffs == [{"before_header": "x.cfg", "after_header": "x.cfg",
                             "before": "old line\n", "after": "new line\n"}]
    assert Path(tmp_path / "x.cfg").read_text() == "old line\n"  # check mode writes nothing
