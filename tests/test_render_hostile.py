"""Hostile values in every field: the renderers quote them into their own argument, or refuse.

The lab's model is dumped once by running preflight; then each hostile string below goes into
each string (or number) field of the model and of the render context, one at a time, and the
site is rendered with the plugin's own code (module_utils/render.py). For every result:

- refused: every problem names a host (or "site"), a field and a file, on one line;
- rendered: each file has the lab's structure. Kickstarts are parsed by pykickstart (same
  commands, same count of each, same options per line, same scripts and headers, same package
  count) and every parsed value that differs from the lab's carries the hostile string; grub.cfg
  is tokenised the way GRUB does (same commands and word counts, no new expansion); pxelinux,
  dnsmasq and index.txt keep the lab's lines, options and fields.
"""

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
import warnings

import pytest
import yaml
from conftest import REPO, VENV_BIN, copy_lab, run

sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.kickstack.core.plugins.module_utils import quoting  # noqa: E402
from ansible_collections.kickstack.core.plugins.module_utils.render import (  # noqa: E402
    RenderError,
    Renderer,
    check_targets,
)
from pykickstart.parser import KickstartParser, Packages  # noqa: E402
from pykickstart.version import makeVersion  # noqa: E402
from test_golden import GOLDEN, normalise  # noqa: E402

ROOT_HASH = "$6$rounds=656000$saltsaltsaltsalt$" + "A" * 86

HOSTILE = [
    "a\nb",
    "x\n%post\ntouch /pwned\n%end",
    "\r%pre",
    "tab\there",
    "nul\x00",
    "esc\x1b[2J",
    "vt\x0bff\x0c",
    "fs\x1c nel\x85",
    "ls\u2028%post\u2029",
    "%post",
    "%end",
    '"',
    "'",
    "two words",
    ";reboot",
    "# comment",
    "$(reboot)",
    "`reboot`",
    "${root}",
    "back\\slash\\",
    "{{ 7*7 }}{% raw %}",
    "--username=root",
    '" --username=root "',
    "' --username=root '",
    "a,b",
    "x" * 5000,
    "\u00e0 \u00a0nbsp",
    "<>&|(){}",
    "../../etc/passwd",
    "..",
]

# Keys that select a branch or a lookup rather than being written: changing them changes what
# is rendered by design (or fails a lookup), which is not what this test is about.
SELECTORS = {"profile", "family", "network", "boot_network", "controller", "pxe", "replication_network",
             "os_default", "netboot", "delivery", "drbd_peer", "major", "boot_nic", "disks", "cidr"}
# cmp02 is a standalone host (kickstack_delivery: standalone): its kickstart fetches a bundle.
HOSTS = ("ctl01", "stor01", "cmp02")
STANDALONE = "cmp02"
BUNDLES = {STANDALONE: b"not really a tar.gz: the renderer only pins its sha256\n"}


# --- the lab's model and context, once -----------------------------------------------------

@pytest.fixture(scope="session")
def lab_model(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    inventory = copy_lab(base / "inventory")
    out = base / "model.json"
    playbook = base / "dump.yml"
    playbook.write_text(yaml.safe_dump([
        {"name": "Preflight", "ansible.builtin.import_playbook": str(REPO / "playbooks" / "preflight.yml")},
        {"name": "Dump the model", "hosts": "localhost", "connection": "local", "gather_facts": False,
         "tasks": [{"name": "Write it", "ansible.builtin.copy": {
             "content": "{{ hostvars.localhost.ansible_facts.kickstack_model | to_json }}", "dest": str(out)}}]},
    ]))
    result = run([VENV_BIN / "ansible-playbook", "-i", inventory, playbook])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    model = json.loads(out.read_text())
    model["hosts"][STANDALONE]["delivery"] = "standalone"
    return model


def lab_context(model):
    role = REPO / "roles" / "kickstart"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    variables = yaml.safe_load((role / "vars" / "main.yml").read_text())
    return {
        "http_base_url": f"http://{model['site']['pxe_ip']}/kickstack",
        "tftp_root": defaults["kickstart_tftp_root"],
        "uefi_boot_file": defaults["kickstart_uefi_boot_file"],
        "bios_boot_file": defaults["kickstart_bios_boot_file"],
        "boot_timeout": int(defaults["kickstart_boot_timeout"]),
        "lease_time": defaults["kickstart_lease_time"],
        "dhcp_mode": defaults["kickstart_dhcp_mode"],
        # The role takes them from the checked model (kickstack_kernel_args).
        "kernel_args": model["site"]["kernel_args"],
        "families": variables["__kickstart_families"],
        "profiles": variables["__kickstart_profiles"],
        "extra_packages": ["tmux"],
    }


@pytest.fixture(scope="session")
def renderer():
    return Renderer(str(REPO / "templates"))


@pytest.fixture(scope="session")
def baseline(lab_model, renderer):
    context = lab_context(lab_model)
    rendered = renderer.render(lab_model, context, ROOT_HASH, bundles=BUNDLES)
    assert not rendered.problems, [str(p) for p in rendered.problems]
    return context, {rel: out.content for rel, out in rendered.outputs.items()}


def test_shared_render_core_reproduces_the_golden_files(lab_model, renderer):
    """The test renders through the plugin's own code: same bytes as the golden files."""
    context = dict(lab_context(lab_model), extra_packages=[])
    # The lab keeps root locked (no kickstack_root_password_in_kickstart): the plugin passes no hash.
    outputs = renderer.render(lab_model, context, None, bundles=BUNDLES).outputs
    pairs = {"ks/ctl01.ks": "fedora-controller.ks", "ks/cmp01.ks": "fedora-compute.ks",
             "ks/stor01.ks": "el-storage.ks", "grub.cfg-01-52-54-00-60-00-11": "grub.cfg-01-ctl01",
             "pxelinux.cfg/01-52-54-00-60-00-31": "pxelinux.cfg-01-stor01",
             "dnsmasq/kickstack.conf": "dnsmasq-kickstack.conf", "index.txt": "index.txt"}
    for rel, golden in pairs.items():
        assert normalise(outputs[rel].content) == (GOLDEN / golden).read_text(), rel


# --- where a hostile value can go ------------------------------------------------------------

def leaves(node, path=()):
    """Paths of every string or number below node, skipping selector keys."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SELECTORS or (len(path) >= 2 and path[-2] == "networks" and key == "name"):
                continue
            yield from leaves(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from leaves(value, path + (index,))
    elif isinstance(node, (str, int)) and not isinstance(node, bool):
        yield path


def field_paths(model, context):
    paths = [("model", "site") + p for p in leaves(model["site"], ())]
    for name in HOSTS:
        paths += [("model", "hosts", name) + p for p in leaves(model["hosts"][name], ())]
    for key in ("http_base_url", "tftp_root", "uefi_boot_file", "bios_boot_file", "lease_time", "boot_timeout"):
        paths.append(("context", key))
    paths += [("context", "kernel_args", i) for i in range(len(context["kernel_args"]))]
    paths += [("context", "extra_packages", 0), ("context", "profiles", "controller", "firewall_ports", 0),
              ("context", "profiles", "controller", "partitions", 1, "mount"),
              ("context", "profiles", "storage", "partitions", 0, "size_mb"),
              ("context", "families", "Fedora", "package_groups", 0), ("root_hash",)]
    return paths


def inject(model, context, path, value):
    """Copies of model and context (and the root hash) with value at path."""
    model, context, root_hash = copy.deepcopy(model), copy.deepcopy(context), ROOT_HASH
    if path == ("root_hash",):
        return model, context, value
    target = model if path[0] == "model" else context
    node = target
    for key in path[1:-1]:
        node = node[key]
    node[path[-1]] = value
    # The boot NIC is the interface on the boot network: keep the two views of it in step.
    if path[:2] == ("model", "hosts") and len(path) == 6 and path[3] == "interfaces":
        host = model["hosts"][path[2]]
        if host["interfaces"][path[4]]["network"] == model["site"]["boot_network"]:
            host["boot_nic"][path[5]] = value
    return model, context, root_hash


# --- readers of each format -------------------------------------------------------------------

HIDDEN = {"lineno", "currentLine", "currentCmd", "handler", "writePriority", "seen", "op"}


class Recorder(KickstartParser):
    """pykickstart's parser, recording each command's arguments and what they were parsed into."""

    def handleCommand(self, lineno, args):
        obj = self.handler.dispatcher(args, lineno)
        values = {k: v for k, v in vars(obj).items() if k not in HIDDEN} if obj is not None else {}
        self.record.append((args, copy.deepcopy(values)))


PARSERS = {}


def parse_ks(text, lab_text):
    version = re.search(r"\((F\d+|RHEL\d+) syntax\)", lab_text).group(1)
    if version not in PARSERS:
        PARSERS[version] = Recorder(makeVersion(version))
    parser = PARSERS[version]
    handler = parser.handler
    handler.scripts, handler.packages, parser.record = [], Packages(), []
    for command in {id(c): c for c in handler.commands.values() if c is not None}.values():
        data = command.dataList() if hasattr(command, "dataList") else None
        if isinstance(data, list):
            data.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parser.readKickstartFromString(text)
    scripts = [(s.type, s.interp, s.logfile, s.errorOnFail, s.script) for s in handler.scripts]
    found = handler.packages
    packages = sorted(found.packageList + [g.name for g in found.groupList] + found.excludedList
                      + ([found.environment] if found.environment else []))
    return parser.record, scripts, packages


def carries(value, hostile):
    """A parsed value that differs from the lab's must hold the hostile string (or be derived from it)."""
    if isinstance(value, (list, tuple)):
        return any(carries(v, hostile) for v in value)
    text = str(value)
    return hostile in text or hostile.strip("/").replace("/", "_") in text


def check_kickstart(lab, got, hostile):
    lab_cmds, lab_scripts, lab_pkgs = lab
    cmds, scripts, pkgs = got
    assert [a[0] for a, _ in cmds] == [a[0] for a, _ in lab_cmds], "the commands changed"
    for (lab_args, lab_values), (args, values) in zip(lab_cmds, cmds):
        assert len(args) == len(lab_args), f"{args[0]}: {len(lab_args)} arguments became {len(args)}"
        for lab_arg, arg in zip(lab_args, args):
            if arg != lab_arg:
                option = lab_arg.split("=", 1)[0] + "=" if lab_arg.startswith("--") else ""
                assert arg.startswith(option) and carries(arg, hostile), f"{args[0]}: {lab_arg!r} -> {arg!r}"
                assert option or not arg.startswith("-"), f"{args[0]}: positional {arg!r} reads as an option"
        assert values.keys() == lab_values.keys()
        for key in values:
            if values[key] != lab_values[key]:
                assert carries(values[key], hostile), f"{args[0]}.{key}: {lab_values[key]!r} -> {values[key]!r}"
    assert len(scripts) == len(lab_scripts)
    for lab_script, script in zip(lab_scripts, scripts):
        assert script[:4] == lab_script[:4], "a script header changed"
        lab_lines, lines = lab_script[4].splitlines(), script[4].splitlines()
        assert len(lines) == len(lab_lines), "the script has other lines"
        for lab_line, line in zip(lab_lines, lines):
            if line == lab_line:
                continue
            if lab_line.startswith("{"):
                doc, lab_doc = json.loads(line), json.loads(lab_line)
                assert doc.keys() == lab_doc.keys()
                assert all(doc[k] == lab_doc[k] or hostile in doc[k] for k in doc)
            else:
                words, lab_words = shlex.split(line), shlex.split(lab_line)
                assert len(words) == len(lab_words), f"shell line {lab_line!r} -> {line!r}"
                assert all(w == lw or hostile in w for w, lw in zip(words, lab_words))
    assert len(pkgs) == len(lab_pkgs) and set(pkgs) - set(lab_pkgs) <= {hostile.lstrip("@^-")}, pkgs


def grub_commands(text):
    """Split grub.cfg into commands of words as GRUB's lexer does; count unquoted expansions."""
    commands, words, word, in_word, expansions, i = [], [], [], False, 0, 0

    def end_word():
        nonlocal word, in_word
        if in_word:
            words.append("".join(word))
        word, in_word = [], False

    while i < len(text):
        char = text[i]
        if char == "'":
            close = text.index("'", i + 1)
            word.append(text[i + 1:close])
            in_word, i = True, close + 1
            continue
        if char == '"':
            raise AssertionError("grub.cfg uses a double-quoted string (expansions inside)")
        if char == "\\":
            word.append(text[i + 1])
            in_word, i = True, i + 2
            continue
        if char == "#" and not in_word:
            i = text.find("\n", i)
            i = len(text) if i < 0 else i
            continue
        if char in " \t":
            end_word()
        elif char in "\n;|&<>()":
            end_word()
            if words:
                commands.append(words)
            words = []
            if char != "\n":
                commands.append([char])
        else:
            if char == "$":
                expansions += 1
            word.append(char)
            in_word = True
        i += 1
    end_word()
    if words:
        commands.append(words)
    return commands, expansions


def check_grub(lab, got, hostile):
    lab_cmds, lab_exp = grub_commands(lab)
    cmds, exp = grub_commands(got)
    assert exp == lab_exp, "an unquoted $ appeared"
    assert [c[0] for c in cmds] == [c[0] for c in lab_cmds], "the GRUB commands changed"
    for lab_cmd, cmd in zip(lab_cmds, cmds):
        assert len(cmd) == len(lab_cmd), f"{cmd[0]}: other number of words"
        assert all(w == lw or hostile in w for w, lw in zip(cmd, lab_cmd)), cmd


def check_lines(lab, got, hostile, split):
    lab_lines, lines = lab.split("\n"), got.split("\n")
    assert len(lines) == len(lab_lines), "other number of lines"
    for lab_line, line in zip(lab_lines, lines):
        if line == lab_line or line.startswith("#") and lab_line.startswith("#"):
            continue
        words, lab_words = split(line), split(lab_line)
        assert len(words) == len(lab_words) and words[0] == lab_words[0], f"{lab_line!r} -> {line!r}"
        assert all(w == lw or hostile in w for w, lw in zip(words, lab_words)), f"{lab_line!r} -> {line!r}"


def pxelinux_words(line):
    """A pxelinux line: its keyword and arguments (MENU LABEL takes the rest of the line)."""
    if line.strip().startswith("MENU LABEL "):
        return ["MENU LABEL", line.strip()[len("MENU LABEL "):]]
    return line.split()


def dnsmasq_fields(line):
    if not line:
        return [""]
    option, _, value = line.partition("=")
    return [option] + value.split(",")


# --- the property ------------------------------------------------------------------------------

def test_hostile_values_stay_in_their_argument_or_are_refused(lab_model, renderer, baseline, tmp_path):
    context, lab = baseline
    lab_ks = {}
    stats = {"cases": 0, "refused": 0, "rendered": 0}
    dnsmasq_files = {}
    for path in field_paths(lab_model, context):
        for hostile in HOSTILE:
            model, ctx, root_hash = inject(lab_model, context, path, hostile)
            rendered = renderer.render(model, ctx, root_hash, bundles=BUNDLES)
            stats["cases"] += 1
            where = f"{'.'.join(map(str, path))} = {hostile[:40]!r}"
            if rendered.problems:
                stats["refused"] += 1
                for problem in rendered.problems:
                    line = str(problem)
                    assert problem.host and problem.field and problem.file, where
                    assert not quoting.CONTROL_RE.search(line), f"{where}: {line!r}"
                    assert "Traceback" not in line
                    if path == ("root_hash",) and len(hostile) > 3:
                        assert hostile not in line, f"{where}: the secret is shown"
                continue
            stats["rendered"] += 1
            outputs = {rel: out.content for rel, out in rendered.outputs.items()}
            assert outputs.keys() == lab.keys(), where
            check_targets(str(tmp_path), sorted(outputs))
            changed = [rel for rel in outputs if outputs[rel] != lab[rel]]
            kickstarts = [rel for rel in changed if rel.endswith(".ks")]
            preferred = [rel for rel in kickstarts if any(f"ks/{h}.ks" == rel for h in HOSTS)]
            for rel in (preferred or kickstarts)[:1]:
                if rel not in lab_ks:
                    lab_ks[rel] = parse_ks(lab[rel], lab[rel])
                try:
                    check_kickstart(lab_ks[rel], parse_ks(outputs[rel], lab[rel]), hostile)
                except Exception as exc:
                    raise AssertionError(f"{where}: {rel}: {exc}") from exc
            for rel in changed:
                try:
                    if rel.startswith("grub.cfg"):
                        check_grub(lab[rel], outputs[rel], hostile)
                    elif rel.startswith("pxelinux.cfg/"):
                        check_lines(lab[rel], outputs[rel], hostile, pxelinux_words)
                    elif rel == "dnsmasq/kickstack.conf":
                        check_lines(lab[rel], outputs[rel], hostile, dnsmasq_fields)
                        dnsmasq_files.setdefault(outputs[rel], (where, hostile))
                    elif rel == "index.txt":
                        assert len(outputs[rel].split("\n")) == len(lab[rel].split("\n"))
                except Exception as exc:
                    raise AssertionError(f"{where}: {rel}: {exc}") from exc
    print(f"hostile cases: {stats}")
    # Both outcomes must really occur: quoting is exercised, not only refusal.
    assert stats["rendered"] > stats["cases"] // 4, stats
    assert stats["refused"] > stats["cases"] // 4, stats

    # dnsmasq itself reads every rendered hostile configuration: it either accepts it, or
    # rejects the one option that holds the hostile value (a bad address is its to refuse).
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    assert dnsmasq_files, "no hostile value reached a rendered dnsmasq configuration"
    accepted = 0
    for number, (content, (where, hostile)) in enumerate(dnsmasq_files.items()):
        conf = tmp_path / f"dnsmasq-{number}.conf"
        conf.write_text(content)
        result = subprocess.run([dnsmasq, "--test", "-C", str(conf)], capture_output=True, text=True)
        if result.returncode == 0:
            assert "syntax check OK" in result.stderr + result.stdout, where
            accepted += 1
            continue
        line = re.search(r" at line (\d+) of ", result.stderr)
        assert line, f"{where}: {result.stderr}"
        assert hostile in content.split("\n")[int(line.group(1)) - 1], f"{where}: {result.stderr}"
    assert accepted, "dnsmasq refused every hostile configuration"


# --- the filters, the file names and the plugin on their own ----------------------------------

SAMPLES = [h for h in HOSTILE if not quoting.CONTROL_RE.search(h)] + ["plain", "$6$x$y", "a'b\"c\\d"]


@pytest.mark.parametrize("value", SAMPLES)
def test_kickstart_value_is_exactly_one_shlex_argument(value):
    for line in (f"cmd --opt={quoting.ks_value(value, 'f')} --next", f"cmd {quoting.ks_value(value, 'f')} --next"):
        args = shlex.split(line, comments=True)
        assert len(args) == 3 and args[-1] == "--next" and value in args[1], line
        assert line.splitlines() == [line]


@pytest.mark.parametrize("value", SAMPLES)
def test_grub_word_is_exactly_one_word(value):
    commands, expansions = grub_commands(f"linux {quoting.grub(value, 'f')} next\n")
    assert commands == [["linux", value, "next"]] and expansions == 0


@pytest.mark.parametrize("value", [h for h in HOSTILE if quoting.CONTROL_RE.search(h)])
def test_control_characters_are_refused_everywhere(value):
    for name in ("ks_value", "ks_positional", "ks_item", "ks_package", "sh", "grub", "grub_kernel",
                 "pxe_kernel", "pxe_text", "dnsmasq", "user_name"):
        with pytest.raises(quoting.Unsafe) as refused:
            quoting.FILTERS[name](value, "kickstack_field")
        assert refused.value.field == "kickstack_field" and not quoting.CONTROL_RE.search(str(refused.value))
    assert not quoting.CONTROL_RE.search(quoting.json_line({"v": value}, "f"))
    assert json.loads(quoting.json_line({"v": value}, "f")) == {"v": value}
    assert len(quoting.text(f"a{value}b").splitlines()) == 1
    assert all(line.startswith("#") for line in quoting.comment(f"one\n{value}").splitlines())


@pytest.mark.parametrize("name, value", [
    ("ks_positional", "--username=root"), ("ks_item", "sda,sdb"), ("ks_list", ["a", "b,c"]),
    ("ks_package", "%post"), ("ks_package", "vim --nodefaults"), ("ks_package", "a#b"),
    ("user_name", "root ALL=(ALL)"), ("lv_name", "/var/lo g"), ("grub_kernel", "a b"), ("grub_kernel", "a'b"),
    ("pxe_kernel", 'inst.ks="x'), ("pxe_kernel", "\u00e0"), ("pxe_kernel", "x" * 2000), ("dnsmasq", "a,b"),
    ("dnsmasq", "a#b"), ("dnsmasq", "a b"), ("dnsmasq", 'a"b'), ("number", "5"), ("number", True),
    ("ks_value", ["a"]), ("ks_value", None), ("ks_value", ""), ("grub", {"a": 1}),
])
def test_values_a_format_cannot_carry_are_refused(name, value):
    with pytest.raises(quoting.Unsafe) as refused:
        quoting.FILTERS[name](value, "kickstack_field")
    assert refused.value.field == "kickstack_field"


def test_secret_values_never_appear_in_a_refusal():
    with pytest.raises(quoting.Unsafe) as refused:
        quoting.ks_positional("-$6$secret\n", "kickstack_secrets.root_password_hash", secret=True)
    assert "secret" in str(refused.value) and "$6$secret" not in str(refused.value)


def test_ssh_key_comment_cannot_add_options(lab_model, renderer, baseline):
    context, lab = baseline
    key = lab_model["site"]["deploy_ssh_keys"][0] + '" --username=root "x'
    model, ctx, root_hash = inject(lab_model, context, ("model", "site", "deploy_ssh_keys", 0), key)
    rendered = renderer.render(model, ctx, root_hash, bundles=BUNDLES)
    assert not rendered.problems
    commands, _, _ = parse_ks(rendered.outputs["ks/ctl01.ks"].content, lab["ks/ctl01.ks"])
    sshkeys = [values for args, values in commands if args[0] == "sshkey"]
    assert sshkeys == [{"username": "deploy", "key": key, "sshkey": [key]}]


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "..", "x\ny", "-rf"])
def test_host_names_that_are_not_a_file_name_are_refused(lab_model, renderer, baseline, name):
    context, _ = baseline
    model = copy.deepcopy(lab_model)
    model["hosts"][name] = dict(copy.deepcopy(model["hosts"]["cmp01"]), name=name)
    rendered = renderer.render(model, context, ROOT_HASH, bundles=BUNDLES)
    assert [(p.host, p.field) for p in rendered.problems] == [(name, "inventory host name")]
    assert all(not rel.startswith("ks/") or rel.count("/") == 1 for rel in rendered.outputs)


def test_output_paths_stay_inside_the_build_directory(tmp_path):
    dest = tmp_path / "pxe"
    (dest / "ks").mkdir(parents=True)
    (dest / "pxelinux.cfg").symlink_to(tmp_path)
    check_targets(str(dest), ["ks/a.ks", "grub.cfg-01-x", "dnsmasq/kickstack.conf"])
    for rel in ("../x", "/etc/passwd", "ks/../../x", "ks//a", "pxelinux.cfg/01-x"):
        with pytest.raises(RenderError) as refused:
            check_targets(str(dest), [rel])
        assert rel in str(refused.value)


def test_a_template_value_without_a_quoting_filter_fails_the_render(lab_model, baseline, tmp_path):
    context, _ = baseline
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    grub = tmp_path / "templates" / "pxe" / "grub.cfg.j2"
    grub.write_text(grub.read_text() + "# {{ host.fqdn }}\n")
    rendered = Renderer(str(tmp_path / "templates")).render(lab_model, context, ROOT_HASH, bundles=BUNDLES)
    assert rendered.problems and {p.field for p in rendered.problems} == {"template"}
    assert not any(rel.startswith("grub.cfg") for rel in rendered.outputs)


def test_the_plugin_refuses_cleanly_and_writes_nothing(lab_model, baseline, tmp_path):
    context, _ = baseline
    model = copy.deepcopy(lab_model)
    model["site"]["time_sources"] = ["pool.example.test\n%pre\ntouch /pwned\n%end"]
    model["hosts"]["cmp01"]["interfaces"][0]["mtu"] = "9000 --bootproto=dhcp"
    (tmp_path / "vars.json").write_text(json.dumps({"hostile_model": model, "render_context": context}))
    (tmp_path / "render.yml").write_text(yaml.safe_dump([{
        "name": "Render a hostile model", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "tasks": [{"name": "Render", "kickstack.core.pxe_render": {
            "model": "{{ hostile_model }}", "context": "{{ render_context }}",
            "template_dir": str(REPO / "templates"), "dest": str(tmp_path / "pxe")}}]}]))
    result = run([VENV_BIN / "ansible-playbook", "-i", "localhost,", tmp_path / "render.yml",
                  "-e", f"@{tmp_path / 'vars.json'}"])
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    assert "host ctl01: kickstack_time_sources:" in output and "(in ks/ctl01.ks)" in output
    assert "host cmp01: kickstack_networks.mtu:" in output
    assert not (tmp_path / "pxe").exists()
