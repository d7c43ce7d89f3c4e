"""The configs under ``cluster/``: the launcher config against the schema inside the installed
``ray``, the Kubernetes manifests for the fields KubeRay and Kubernetes require, and every ``elmo``
command they (and the cluster docs) name against the real ``elmo`` parser.

No cloud and no Kubernetes: these are static checks. Commands whose subcommand does not exist yet
are reported as xfail, never skipped silently; ``-v`` lists every command checked.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import ray
from pipelines.cli import build_parser

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
LAUNCHER = CLUSTER / "aws.yaml"
KUBERAY = sorted((CLUSTER / "kuberay").glob("*.yaml"))
# Where the cluster docs show commands: cluster/README.md, and docs/cluster.md (the README points to both).
DOCS = [(CLUSTER / "README.md", None), (ROOT / "docs" / "cluster.md", None)]
SECRET_NAMES = re.compile(r"AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID|AWS_SESSION_TOKEN|aws_secret_access_key|AKIA[0-9A-Z]{16}")


# --- finding the documents and the commands -----------------------------------------------------

def _docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _embedded_manifests(doc: dict) -> dict[str, dict]:
    """Manifests kept as text in a ConfigMap (e.g. the RayJob template a CronJob creates), by key."""
    found = {}
    if doc.get("kind") == "ConfigMap":
        for key, text in (doc.get("data") or {}).items():
            try:
                inner = yaml.safe_load(text)
            except yaml.YAMLError:
                continue
            if isinstance(inner, dict) and "kind" in inner and "apiVersion" in inner:
                found[key] = inner
    return found


_SHELL_OPERATORS = {"&&", "||", ";", "|", "&", ">", ">>", "<", "(", ")", ";;"}


def elmo_commands(text: str) -> list[list[str]]:
    """Every ``elmo ...`` (or ``python -m pipelines.cli ...``) command line in shell-like ``text``."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip().lstrip("#").strip()
        if not re.search(r"(^|[\s/])elmo\s+[a-z]|pipelines\.cli", line):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError:  # unbalanced quotes: not a command line
            continue
        for i, token in enumerate(tokens):
            is_elmo = token == "elmo" or token.endswith("/elmo")
            is_module = token == "pipelines.cli" and i > 0 and tokens[i - 1] == "-m"
            if not (is_elmo or is_module) or i + 1 >= len(tokens):
                continue
            args = []
            for arg in tokens[i + 1:]:
                if arg in _SHELL_OPERATORS or arg.startswith("#"):
                    break
                args.append(arg)
            if args and re.fullmatch(r"[a-z0-9]+", args[0]):
                commands.append(args)
            break
    return commands


def _markdown_code(path: Path, section: str | None = None) -> str:
    """The fenced code blocks of a Markdown file (of one ``## section`` only, if named)."""
    text = path.read_text()
    if section is not None:
        start = text.find(f"\n## {section}")
        if start < 0:
            return ""
        end = text.find("\n## ", start + 1)
        text = text[start:end if end > 0 else len(text)]
    return "\n".join(re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S))


def collect_commands() -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []

    def add(source: str, text: str) -> None:
        for args in elmo_commands(text):
            if (source, args) not in found:
                found.append((source, args))

    for path in [LAUNCHER, *KUBERAY]:
        name = str(path.relative_to(ROOT))
        comments = "\n".join(line for line in path.read_text().splitlines() if line.lstrip().startswith("#"))
        add(name, comments)
        for doc in _docs(path):
            embedded = _embedded_manifests(doc)
            if embedded:  # read the manifests kept as text parsed (folded lines joined), not as raw text
                doc = {**doc, "data": {k: v for k, v in doc["data"].items() if k not in embedded}}
            for manifest in [doc, *embedded.values()]:
                for text in _strings(manifest):
                    add(name, text)
    for path, section in DOCS:
        if path.exists():
            add(str(path.relative_to(ROOT)), _markdown_code(path, section))
    return found


COMMANDS = collect_commands()
SUBCOMMANDS = set(build_parser()._subparsers._group_actions[0].choices)  # what `elmo` has today


# --- the launcher config -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def launcher() -> dict:
    return yaml.safe_load(LAUNCHER.read_text())


def test_launcher_config_matches_the_schema_in_the_installed_ray(launcher):
    import jsonschema

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(launcher, schema)
    # and Ray's own checks, on the config as `ray up` fills it out (no AWS calls)
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(launcher)))


def test_launcher_cluster_shape_and_access(launcher):
    types = launcher["available_node_types"]
    head = types[launcher["head_node_type"]]
    workers = {name: t for name, t in types.items() if name != launcher["head_node_type"]}
    gpu = {name: t for name, t in workers.items() if re.match(r"(g\d|p\d)", t["node_config"]["InstanceType"])}
    assert not re.match(r"(g\d|p\d)", head["node_config"]["InstanceType"]), "the head is a CPU node"
    assert gpu, "GPU worker types"
    for name, t in workers.items():
        assert t["min_workers"] == 0 < t["max_workers"], f"{name} autoscales from zero"
    assert sum(t["max_workers"] for t in workers.values()) <= launcher["max_workers"]
    for name, t in types.items():  # S3 through instance profiles, on every node type
        assert "Name" in t["node_config"]["IamInstanceProfile"] or "Arn" in t["node_config"]["IamInstanceProfile"], name
    assert not SECRET_NAMES.search(LAUNCHER.read_text()), "no keys in the launcher config"


def test_launcher_installs_the_pinned_torch_and_the_package(launcher):
    setup = "\n".join(launcher["setup_commands"])
    torch_pin = re.search(r"torch==([\d.]+)", (ROOT / "Makefile").read_text()).group(1)
    assert f"torch=={torch_pin}" in setup
    assert re.search(r"pip install .*elmo-ray\[pipelines\]", setup)
    assert launcher["docker"]["image"].startswith(f"rayproject/ray:{ray.__version__}-")  # the pinned Ray
    assert "." in launcher["file_mounts"].values()


# --- the Kubernetes manifests --------------------------------------------------------------------

def _manifests() -> list[tuple[str, dict, bool]]:
    """(file, manifest, embedded?) for every document under cluster/kuberay, templates included."""
    found = []
    for path in KUBERAY:
        for doc in _docs(path):
            found.append((path.name, doc, False))
            found.extend((path.name, inner, True) for inner in _embedded_manifests(doc).values())
    return found


MANIFESTS = _manifests()


def _by_kind(kind: str) -> list[tuple[str, dict, bool]]:
    return [m for m in MANIFESTS if m[1]["kind"] == kind]


def _containers(pod_spec: dict) -> list[dict]:
    containers = pod_spec.get("containers")
    assert containers, "a pod template needs containers"
    for c in containers:
        assert c.get("name") and c.get("image"), f"container without name or image: {c}"
    return containers


def check_ray_cluster_spec(spec: dict) -> None:
    assert spec.get("rayVersion") == ray.__version__, "rayVersion is the pinned Ray"
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    groups = [head, *spec["workerGroupSpecs"]]
    for group in groups:
        params = group["rayStartParams"]
        assert all(isinstance(v, str) for v in params.values()), f"rayStartParams values are strings: {params}"
        _containers(group["template"]["spec"])
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"]
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
    assert any("nvidia.com/gpu" in c.get("resources", {}).get("limits", {})
               for g in spec["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]), "a GPU group"


@pytest.mark.parametrize("source, manifest, embedded", MANIFESTS,
                         ids=[f"{s}:{m['kind']}" for s, m, _ in MANIFESTS])
def test_manifest_required_fields(source, manifest, embedded):
    assert manifest.get("apiVersion") and manifest.get("kind")
    meta = manifest["metadata"]
    assert meta.get("name") or (embedded and meta.get("generateName")), "metadata.name"
    kind = manifest["kind"]
    if kind in ("RayCluster", "RayJob", "CronJob"):
        assert manifest["apiVersion"] == ("batch/v1" if kind == "CronJob" else "ray.io/v1")
        assert isinstance(manifest.get("spec"), dict)
    if kind == "ConfigMap":
        assert all(isinstance(v, str) for v in manifest["data"].values())
    assert not SECRET_NAMES.search(yaml.safe_dump(manifest)), "no keys in manifests (IRSA instead)"


def test_raycluster_autoscales_cpu_and_gpu_groups():
    [(_, cluster, _)] = _by_kind("RayCluster")
    spec = cluster["spec"]
    check_ray_cluster_spec(spec)
    assert spec["enableInTreeAutoscaling"] is True
    assert {g["groupName"] for g in spec["workerGroupSpecs"]} >= {"cpu", "gpu"}
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] < group["maxReplicas"], f"{group['groupName']} autoscales"


def test_rayjobs_have_an_entrypoint_and_a_cluster():
    names = {m["metadata"]["name"] for _, m, _ in _by_kind("RayCluster")}
    jobs = _by_kind("RayJob")
    assert {(s, e) for s, _, e in jobs} == {("rayjob-train.yaml", False), ("cronjob-embed.yaml", True)}
    for source, job, _ in jobs:
        spec = job["spec"]
        assert spec["entrypoint"].split()[0] == "elmo", source
        assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec), f"{source}: one cluster source"
        if "rayClusterSpec" in spec:
            check_ray_cluster_spec(spec["rayClusterSpec"])
        else:
            assert spec["clusterSelector"]["ray.io/cluster"] in names, f"{source}: selects the RayCluster"


def test_cronjob_schedules_one_run_at_a_time():
    [(_, cron, _)] = _by_kind("CronJob")
    spec = cron["spec"]
    assert len(spec["schedule"].split()) == 5
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    _containers(pod)
    [template] = [m for _, m, embedded in _by_kind("RayJob") if embedded]
    # the RayJob gives up before the pod that waits for it is killed
    assert template["spec"]["activeDeadlineSeconds"] < spec["jobTemplate"]["spec"]["activeDeadlineSeconds"]


def test_references_between_manifests_resolve():
    defined = {(m["kind"], m["metadata"].get("name")) for _, m, _ in MANIFESTS}
    for source, manifest, _ in MANIFESTS:
        for pod in _pod_specs(manifest):
            account = pod.get("serviceAccountName")
            assert account is None or ("ServiceAccount", account) in defined, f"{source}: {account}"
            for volume in pod.get("volumes", []):
                if "configMap" in volume:
                    assert ("ConfigMap", volume["configMap"]["name"]) in defined, f"{source}: {volume}"
            mounts = {m["name"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
            assert mounts <= {v["name"] for v in pod.get("volumes", [])}, source


def _pod_specs(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        if "containers" in node:
            yield node
        for value in node.values():
            yield from _pod_specs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _pod_specs(value)


def test_training_config_in_the_configmap_is_a_valid_train_config():
    if "train" not in SUBCOMMANDS:
        pytest.xfail("elmo train does not exist yet: its config cannot be checked")
    from pipelines.config import from_dict
    from pipelines.train.job import TrainJobConfig

    [config_map] = [m for s, m, _ in _by_kind("ConfigMap") if s == "rayjob-train.yaml"]
    config = from_dict(TrainJobConfig, tomllib.loads(config_map["data"]["train.toml"]))
    config.validate()
    assert config.use_gpu and config.num_workers == 4


# --- every elmo command they name -----------------------------------------------------------------

def test_the_checker_finds_and_rejects_a_bad_command(capsys):
    text = "set -e && elmo embed --model s3://m \\\n  --bogus 1  # a comment\nelmo-ray is a name, not a command\n"
    assert elmo_commands(text) == [["embed", "--model", "s3://m", "--bogus", "1"]]
    with pytest.raises(pytest.fail.Exception, match="does not parse"):
        _parse(["embed", "--bogus", "1"])
    assert "unrecognized arguments: --bogus 1" in capsys.readouterr().err


def test_commands_were_found_in_every_config():
    sources = {source for source, _ in COMMANDS}
    assert {str(p.relative_to(ROOT)) for p in [LAUNCHER, *KUBERAY]} <= sources
    named = {args[0] for _, args in COMMANDS} | {_submitted(args)[0] for _, args in COMMANDS if args[0] == "submit"}
    assert named >= {"submit", "vocab", "embed", "train"}
    entrypoints = [j["spec"]["entrypoint"] for _, j, _ in _by_kind("RayJob")]
    for entrypoint in entrypoints:  # the RayJobs' entrypoints are among the commands checked
        assert shlex.split(entrypoint)[1:] in [args for _, args in COMMANDS], entrypoint


def _submitted(args: list[str]) -> list[str]:
    """The command after ``elmo submit ... --`` (a leading ``elmo`` dropped)."""
    inner = args[args.index("--") + 1:] if "--" in args else []
    return inner[1:] if inner[:1] == ["elmo"] else inner


def _parse(args: list[str]) -> None:
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"`elmo {shlex.join(args)}` does not parse (exit {exc.code}); argparse says it above")


@pytest.mark.parametrize("source, args", COMMANDS, ids=[f"{s}: elmo {shlex.join(a)}" for s, a in COMMANDS])
def test_elmo_command_parses(source, args):
    if args[0] not in SUBCOMMANDS:
        pytest.xfail(f"elmo {args[0]} does not exist yet (named in {source}); it is checked once it does")
    _parse(args)
    if args[0] == "submit":  # and the command it submits
        inner = _submitted(args)
        assert inner, f"{source}: elmo submit without `-- COMMAND`"
        if inner[0] not in SUBCOMMANDS:
            pytest.xfail(f"elmo {inner[0]} does not exist yet (submitted in {source})")
        _parse(inner)
