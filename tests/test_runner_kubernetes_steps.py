"""The kubernetes runner's pod steps run here for real: the main container's run script, and
prepare laying out the workspace and block where the operator's Jobs resolved them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from controller.api.spec import WorkspaceSpec
from controller.kube import Kube
from controller.refs import BlockRef
from controller.registry import RegistryClient, RegistryOptions, push_block
from controller.runners.artifacts import pack
from controller.runners.events import parse_events
from controller.runners.kubernetes import (
    RUN_SCRIPT,
    KubernetesRunner,
    job_manifest,
    main_env,
)
from controller.runners.prepare import main as prepare_main
from tests.support.git_servers import GitDaemon, Upstream
from tests.support.kube_runner import (
    ANSIBLE,
    KUBECONFIG,
    OPTIONS,
    REF,
    SOURCE,
    make_request,
    manifest,
)
from tests.support.oci_registry import Registry


@pytest.mark.skipif(not Path(ANSIBLE).exists(), reason="ansible-playbook is not installed")
def test_run_script_puts_the_first_failed_task_and_the_stats_in_the_termination_message(
    tmp_path: Path,
) -> None:
    """The main container's command, with the callback where prepare installs it."""
    from controller.runners.prepare import install_plugins

    block = tmp_path / "ws" / "blocks" / REF.name
    block.mkdir(parents=True)
    (block / "deploy.yml").write_text(
        textwrap.dedent(
            """\
            - hosts: localhost
              connection: local
              gather_facts: false
              tasks:
                - {name: first, debug: {msg: hello}}
                - {name: breaks here, fail: {msg: boom}}
            """
        )
    )
    request = make_request(tmp_path / "ws")
    env = main_env(request, OPTIONS)
    env.update(
        HOME=str(tmp_path),
        ANSIBLE_HOME=str(tmp_path / ".ansible"),
        KUBECONFIG="/dev/null",
        PATH=f"{Path(ANSIBLE).parent}:{os.environ['PATH']}",
        ANSIBLE_CALLBACK_PLUGINS=str(install_plugins(tmp_path / "tools") / "callback_plugins"),
        ANSIBLE_VARS_PLUGINS=str(tmp_path / "tools" / "vars_plugins"),
        POLYCRATE_WORKSPACE_SNAPSHOT_YAML=str(tmp_path / "snapshot.yml"),
        CRATEKEEPER_EVENTS_FILE=str(tmp_path / "events.jsonl"),
        CRATEKEEPER_TERMINATION_LOG=str(tmp_path / "termination-log"),
    )
    (tmp_path / "snapshot.yml").write_text("block: {name: app}\n")
    args = [ANSIBLE, "-e", f"@{tmp_path / 'snapshot.yml'}", "deploy.yml"]
    proc = subprocess.run(
        ["/bin/sh", "-c", RUN_SCRIPT, "cratekeeper-run", *args],
        cwd=block,
        env=env,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout.decode()
    events = parse_events((tmp_path / "termination-log").read_text())
    assert events.failed_task == "breaks here"
    assert (events.counts.ok, events.counts.failed) == (1, 1)

    # A playbook that matched no host exits 0; the termination message still tells (and
    # counts the files written under the block's artifacts folder, which are not kept).
    env["CRATEKEEPER_ARTIFACTS_DIR"] = str(tmp_path / "ws" / request.artifacts_dir)
    args = [
        "/bin/sh",
        "-c",
        'mkdir -p "$CRATEKEEPER_ARTIFACTS_DIR" && touch "$CRATEKEEPER_ARTIFACTS_DIR/x" && '
        f'{ANSIBLE} "$@"',
        "x",
        "-e",
        f"@{tmp_path / 'snapshot.yml'}",
        "deploy.yml",
    ]
    (block / "deploy.yml").write_text("- hosts: all\n  tasks: [{ping: {}}]\n")
    (tmp_path / "events.jsonl").unlink()
    proc = subprocess.run(
        ["/bin/sh", "-c", RUN_SCRIPT, "cratekeeper-run", *args],
        cwd=block,
        env=env,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout.decode()
    events = parse_events((tmp_path / "termination-log").read_text())
    assert events.nothing_ran is not None and "matched no host" in events.nothing_ran
    assert events.artifacts_written == 1


def test_prepare_lays_out_the_workspace_at_the_commit_and_the_block_at_the_digest(
    upstream: Upstream, git_daemon: GitDaemon, oci_registry: Registry, tmp_path: Path
) -> None:
    block_dir = tmp_path / "block"
    block_dir.mkdir()
    ref = BlockRef.parse(f"{oci_registry.host}/acme/blocks/prepared-app:1.0.0")
    (block_dir / "block.poly").write_text(f"name: {ref.name}\nversion: 1.0.0\nkind: generic\n")
    (block_dir / "deploy.yml").write_text("- hosts: localhost\n  tasks: []\n")
    client = RegistryClient(RegistryOptions(insecure_registries=(oci_registry.host,)))
    digest = push_block(block_dir, ref, client=client)
    commit = upstream.commit({"ws/workspace.poly": "name: one\n", "other.txt": "x"}, "first")
    upstream.commit({"ws/workspace.poly": "name: two\n"}, "second")
    dest = tmp_path / "pod" / "workspace"
    termination = tmp_path / "termination-log"
    common = [
        *("--repo", git_daemon.url(upstream), "--commit", commit, "--path", "ws"),
        *("--dest", str(dest), "--tools", str(tmp_path / "pod" / "tools")),
        *("--insecure-registry", oci_registry.host, "--termination-log", str(termination)),
    ]

    assert prepare_main([*common, "--block", f"{ref}@{digest}"]) == 0
    assert (dest / "workspace.poly").read_text() == "name: one\n"  # the commit, not the branch
    assert not (dest / "other.txt").exists()  # only the workspace's folder
    assert (dest / "blocks" / ref.name / "deploy.yml").is_file()
    assert (tmp_path / "pod/tools/callback_plugins/cratekeeper_events.py").is_file()
    assert (tmp_path / "pod/tools/vars_plugins/polycrate_vars.py").is_file()
    assert not termination.exists()

    # A local block: nothing to pull; the kept artifacts are laid back, the block's folder made.
    kept = tmp_path / "kept"
    (kept / "artifacts/blocks/infra").mkdir(parents=True)
    (kept / "artifacts/blocks/infra/inventory.yml").write_text("all: {}\n")
    (tmp_path / "kept.tar.gz").write_bytes(pack(kept))
    shutil.rmtree(dest)
    local = [
        "--artifacts",
        str(tmp_path / "kept.tar.gz"),
        "--artifacts-dir",
        "artifacts/blocks/app",
    ]
    assert prepare_main([*common, *local]) == 0
    assert (dest / "artifacts/blocks/infra/inventory.yml").read_text() == "all: {}\n"
    assert (dest / "artifacts/blocks/app").is_dir()

    wrong = "sha256:" + "0" * 64
    assert prepare_main([*common, "--block", f"{ref}@{wrong}"]) == 1
    assert termination.read_text().startswith("BlockNotFound: ")  # a digest it never held


def _flags(args: list[str], name: str) -> list[str]:
    """Every ``name VALUE`` pair of a command line, in order."""
    return [part for i, arg in enumerate(args) if arg == name for part in (arg, args[i + 1])]


def test_the_operators_jobs_pull_where_it_resolved_within_its_limits_and_outlast_its_grace(
    upstream: Upstream, git_daemon: GitDaemon, oci_registry: Registry, tmp_path: Path
) -> None:
    """DESIGN §5: CRATEKEEPER_REGISTRY_MIRRORS and CRATEKEEPER_MAX_BLOCK_SIZE reach the Job's
    init container (which then pulls a block named after a registry it cannot reach, through
    the mirror, as the operator did), and the pod may take the operator's shutdown grace."""
    from controller.operator.wiring import runner_factory
    from controller.settings import Settings

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_bytes(KUBECONFIG)
    kube = Kube.from_kubeconfig(kubeconfig)  # never reached: only manifests are built
    spec = WorkspaceSpec.model_validate({"source": {"url": "https://git.example.com/ws.git"}})
    settings = Settings(
        runner="kubernetes",
        registry_mirrors=f"registry.acme-corp.com={oci_registry.host}",
        insecure_registries=oci_registry.host,
        max_block_size=10_000_000,
        shutdown_grace=300.5,
    )
    runner = runner_factory(settings, kube)("acme", "acme-staging-1", spec)
    assert isinstance(runner, KubernetesRunner)
    pod = job_manifest(make_request(tmp_path), "ck-x", runner._options, SOURCE)["spec"]["template"]
    assert pod["spec"]["terminationGracePeriodSeconds"] >= settings.shutdown_grace
    args = pod["spec"]["initContainers"][0]["args"]
    mirror = _flags(args, "--registry-mirror")
    assert mirror == ["--registry-mirror", f"registry.acme-corp.com={oci_registry.host}"]
    assert _flags(args, "--max-block-size") == ["--max-block-size", "10000000"]
    assert manifest(tmp_path)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 10

    block_dir = tmp_path / "block"
    block_dir.mkdir()
    (block_dir / "block.poly").write_text(
        "name: acme/blocks/mirrored\nversion: 1.0.0\nkind: generic\n"
    )
    (block_dir / "big.bin").write_bytes(os.urandom(200_000))
    ref = BlockRef.parse("registry.acme-corp.com/acme/blocks/mirrored:1.0.0")
    client = RegistryClient(
        RegistryOptions(
            insecure_registries=(oci_registry.host,),
            mirrors=(("registry.acme-corp.com", oci_registry.host),),
        )
    )
    digest = push_block(block_dir, ref, client=client)
    commit = upstream.commit({"ws/workspace.poly": "name: mirrored\n"}, "first")
    dest = tmp_path / "pod" / "workspace"
    common = [
        *("--repo", git_daemon.url(upstream), "--commit", commit, "--path", "ws"),
        *("--dest", str(dest), "--block", f"{ref}@{digest}"),
        *("--insecure-registry", oci_registry.host, "--cache", str(tmp_path / "pod" / "cache")),
    ]
    assert prepare_main([*common, *mirror]) == 0
    assert (dest / "blocks" / ref.name / "big.bin").is_file()
    shutil.rmtree(dest)
    assert prepare_main([*common, *mirror, "--max-block-size", "100000"]) == 1
    assert prepare_main([*common, "--registry-mirror", "no-equals-sign"]) == 1
