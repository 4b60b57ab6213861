"""The service-configuration filters (kickstack.core ini, db_url, amqp_url), in process."""

import configparser
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "collections"))

from ansible.errors import AnsibleFilterError  # noqa: E402
from ansible_collections.kickstack.core.plugins.filter.config import amqp_url, db_url, ini  # noqa: E402

HOSTILE = "p@ss:w/rd?#%&= +\\'\""


def test_ini_reads_back_as_written():
    text = ini({"DEFAULT": {"debug": False, "workers": 2, "skip": None, "empty": "", "none": []},
                "database": {"connection": "mysql+pymysql://u:p@h/db?charset=utf8"},
                "filter_scheduler": {"enabled_filters": ["ComputeFilter", "ImagePropertiesFilter"]}})
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    assert dict(parser["DEFAULT"]) == {"debug": "false", "workers": "2"}
    assert parser["database"]["connection"] == "mysql+pymysql://u:p@h/db?charset=utf8"
    assert parser["filter_scheduler"]["enabled_filters"] == "ComputeFilter,ImagePropertiesFilter"
    assert text.startswith("\n[DEFAULT]\n") and text.endswith("\n") and not text.endswith("\n\n")


@pytest.mark.parametrize("conf, problem", [
    ({"DEFAULT": {"debug": "true\n[database]\nconnection = sqlite://"}}, "control character"),
    ({"DEFAULT": {"debug": "true\rx"}}, "control character"),
    ({"DEFAULT]\n[x": {"a": 1}}, "section name"),
    ({"DEFAULT": {"a = b": 1}}, "key"),
    ({"DEFAULT": {"a": {"nested": 1}}}, "mapping"),
    ({"DEFAULT": ["a"]}, "mapping of keys"),
    ("[DEFAULT]", "mapping of sections"),
])
def test_ini_refuses_what_would_break_out_of_a_line(conf, problem):
    with pytest.raises(AnsibleFilterError, match=problem):
        ini(conf)


def test_db_url_percent_encodes_credentials():
    url = db_url("nova", HOSTILE, "10.60.0.10", "nova_api")
    assert url.startswith("mysql+pymysql://nova:") and url.endswith("@10.60.0.10/nova_api?charset=utf8")
    parts = urlsplit(url)
    assert parts.hostname == "10.60.0.10" and parts.path == "/nova_api"
    assert unquote(parts.password) == HOSTILE and unquote(parts.username) == "nova"


def test_amqp_url_keeps_the_vhost_after_the_first_slash():
    url = amqp_url("nova", HOSTILE, "10.60.0.10", "5672", "/nova")
    parts = urlsplit(url)
    assert parts.scheme == "rabbit" and parts.hostname == "10.60.0.10" and parts.port == 5672
    assert unquote(parts.password) == HOSTILE
    assert parts.path == "//nova"  # oslo.messaging: the vhost is the path after the first "/"


@pytest.mark.parametrize("call, problem", [
    (lambda: db_url("nova", "", "h", "nova"), "password"),
    (lambda: db_url("nova", "pw", "h/evil", "nova"), "host"),
    (lambda: db_url("nova", "pw", "h", "nova?x=1"), "database"),
    (lambda: amqp_url("nova", "pw", "h", "56x", "/nova"), "port"),
    (lambda: amqp_url("nova", "pw", "h", 0, "/nova"), "range"),
    (lambda: amqp_url("nova", "pw", "h", 5672, "/nova?x"), "virtual host"),
])
def test_urls_refuse_bad_parts_without_echoing_the_password(call, problem):
    with pytest.raises(AnsibleFilterError, match=problem) as info:
        call()
    assert "pw" not in str(info.value).replace("password", "")
