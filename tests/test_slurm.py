"""The pipeline on a real SLURM cluster: munged, slurmctld and slurmd started (and stopped) by this module
as a single-node cluster on 127.0.0.1, then `dagster asset materialize` with CROCO_EXECUTOR=slurm.

- prompts → generations → reward_scores for one language run their model steps as SLURM jobs and give
  the rows of the in-process run;
- a generation job cancelled with `scancel` mid-way fails the run; the rerun resumes from the chunks
  the cancelled job staged, with nothing lost or duplicated;
- a job that fails on the node fails the Dagster step with the job id and the job's traceback.

Needs root and Debian's `slurm-wlm` (slurmctld, slurmd, slurm-client) and `munge` packages
(scripts/ci_system_deps.sh installs them); skipped otherwise.
"""

from __future__ import annotations

import json
import operator
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import dagster
import polars as pl
import pytest
from cli_runs import CliRun, dagster_home, materialisation_metadata, staged_chunks
from dagster import DagsterEventType, DagsterInstance, Output, materialize

from croco_pipeline.core.execution import slurm
from croco_pipeline.definitions import ALL_ASSETS, build_definitions
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.compute import ComputeResource

LANGUAGE = "da"
PROMPTS = 6  # train prompts, one chunk each
SETTINGS = {"chunk_prompts": 1, "max_train_prompts": PROMPTS, "max_new_tokens": 16}
ASSETS = "prompts,generations,reward_scores"
TIMEOUT_S = 300
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "scancel", "sinfo")

_missing = [name for name in DAEMONS if shutil.which(name) is None]
pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(
        bool(_missing),
        reason=f"SLURM is not installed ({', '.join(_missing)} missing): apt-get install slurmctld slurmd "
        "slurm-client munge, or run scripts/ci_system_deps.sh",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="a single-node SLURM cluster (munged, slurmd) needs root"),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


class SingleNodeCluster:
    """munged + slurmctld + slurmd in the foreground, as children of this process, on a private
    configuration, ports and state folder (no system file or service is touched)."""

    def __init__(self, root: Path):
        self.root = root
        self.node = socket.gethostname().split(".")[0]
        munge_dir, socket_dir = root / "munge", root / "munge-socket"
        for folder in (munge_dir, root / "state", root / "spool", socket_dir):
            folder.mkdir(parents=True)
        munge_dir.chmod(0o700)
        socket_dir.chmod(0o755)
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.munge_socket = socket_dir / "munge.socket"
        self.conf = root / "slurm.conf"
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=crocotest",
                    f"SlurmctldHost={self.node}(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    "CredType=cred/munge",
                    "MpiDefault=none",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "SchedulerType=sched/backfill",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"StateSaveLocation={root / 'state'}",
                    f"SlurmdSpoolDir={root / 'spool'}",
                    f"SlurmctldPidFile={root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={root / 'slurmctld.log'}",
                    f"SlurmdLogFile={root / 'slurmd.log'}",
                    "ReturnToService=2",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "MinJobAge=3600",
                    "KillWait=5",
                    f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} "
                    f"RealMemory={int(_memory_mib() * 0.8)} State=UNKNOWN",
                    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.processes: list[subprocess.Popen] = []

    def _start(self, *command: str) -> None:
        log = open(self.root / f"{Path(command[0]).name}.out", "wb")
        self.processes.append(
            subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def start(self) -> None:
        munge = self.root / "munge"
        self._start(
            "munged",
            "--foreground",
            "--force",
            f"--socket={self.munge_socket}",
            f"--key-file={munge / 'munge.key'}",
            f"--log-file={munge / 'munged.log'}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--seed-file={munge / 'munged.seed'}",
        )
        self._wait(lambda: self.munge_socket.exists(), "munged socket")
        self._start("slurmctld", "-D", "-i")
        self._wait(lambda: self.run("scontrol", "ping", check=False).returncode == 0, "slurmctld")
        self._start("slurmd", "-D", "-N", self.node)
        self._wait(lambda: self.run("sinfo", "-h", "-o", "%t", check=False).stdout.strip() == "idle", "an idle node")

    def _wait(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args[0] for p in self.processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in self.root.glob("*.out")
                )
                raise RuntimeError(f"single-node SLURM: no {what} (exited: {dead})\n{logs}")
            time.sleep(0.1)

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, check=check, timeout=60)

    def jobs(self) -> dict[str, dict]:
        """Every job the controller knows (pending, running, or finished within MinJobAge)."""
        text = self.run("scontrol", "show", "job", "--oneliner", check=False).stdout
        jobs = {}
        for line in text.splitlines():
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            if "JobId" in fields:
                jobs[fields["JobId"]] = fields
        return jobs

    def stop(self) -> None:
        active = [job for job, fields in self.jobs().items() if fields.get("JobState") in ("PENDING", "RUNNING")]
        if active:
            self.run("scancel", *active, check=False)
        for process in reversed(self.processes):  # slurmd, slurmctld, munged
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = time.perf_counter()
    cluster = SingleNodeCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        print(f"single-node SLURM up in {time.perf_counter() - started:.1f} s")
        yield cluster
    finally:
        cluster.stop()


def _run_config(**settings) -> dict:
    return {"resources": {"settings": {"config": {**SETTINGS, **settings}}}}


def _table(storage: Path, asset: str) -> pl.DataFrame:
    return pl.read_parquet(storage / asset / f"language={LANGUAGE}" / "data.parquet")


class Project:
    """A project folder with its storage, Dagster home and the environment of a SLURM run."""

    def __init__(self, root: Path, cluster: SingleNodeCluster, tiny_environ, **overrides):
        self.root, self.storage = root, root / "croco_data"
        self.home = dagster_home(root / "dagster_home", [LANGUAGE], config="")
        env = {
            key: value for key, value in cluster.env.items() if not key.startswith("CROCO_") or key == "CROCO_CACHE"
        }
        env.update(
            tiny_environ(
                self.storage,
                CROCO_GENERATOR_BACKEND="transformers",
                CROCO_EXECUTOR="slurm",
                CROCO_SLURM_WORK_DIR=root / "slurm_jobs",
                CROCO_SLURM_POLL_SECONDS="0.2",
                **overrides,
            ),
            DAGSTER_HOME=str(self.home),
        )
        self.env = env

    def start(self, select: str = ASSETS, name: str = "run") -> CliRun:
        return CliRun(
            self.env, self.root, self.root / f"{name}.log", select=select, partition=LANGUAGE, run_config=_run_config()
        )

    def output(self, name: str = "run") -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def materialize(self, select: str = ASSETS, name: str = "run") -> tuple[int, str]:
        returncode = self.start(select, name).wait(timeout=TIMEOUT_S)
        return returncode, self.output(name)

    def metadata(self, asset: str) -> dict:
        with DagsterInstance.from_config(str(self.home)) as instance:
            return materialisation_metadata(instance, asset)

    def step_failures(self) -> list[str]:
        with DagsterInstance.from_config(str(self.home)) as instance:
            return [
                entry.dagster_event.step_failure_data.error.to_string()
                for run in instance.get_runs()
                for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE)
            ]

    def log_messages(self) -> list[str]:
        with DagsterInstance.from_config(str(self.home)) as instance:
            messages = []
            for run in instance.get_runs():
                messages += [entry.user_message for entry in instance.all_logs(run.run_id)]
            return messages


@pytest.fixture(scope="module")
def in_process(tmp_path_factory, tiny_environ):
    """The same three assets in this process, without SLURM: the rows to compare against."""
    storage = tmp_path_factory.mktemp("in_process") / "croco_data"
    environ = tiny_environ(storage, CROCO_GENERATOR_BACKEND="transformers")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(language_partitions.name, [LANGUAGE])
    result = materialize(
        ALL_ASSETS,
        selection=ASSETS.split(","),
        partition_key=LANGUAGE,
        instance=instance,
        resources=build_definitions(environ=environ).resources,
        run_config=_run_config(),
    )
    assert result.success
    return {asset: _table(storage, asset) for asset in ("generations", "reward_scores")}


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory, tiny_environ):
    project = Project(tmp_path_factory.mktemp("slurm_run"), cluster, tiny_environ)
    before = set(cluster.jobs())
    started = time.perf_counter()
    returncode, output = project.materialize()
    seconds = time.perf_counter() - started
    assert returncode == 0, output[-6000:]
    print(f"prompts → generations → reward_scores through SLURM: {seconds:.1f} s")
    jobs = {job: fields for job, fields in cluster.jobs().items() if job not in before}
    return project, jobs


def test_model_steps_run_as_slurm_jobs_and_give_the_in_process_rows(slurm_run, in_process):
    project, jobs = slurm_run
    for asset in ("generations", "reward_scores"):
        table = _table(project.storage, asset)
        assert table.height == PROMPTS * 3  # tiny profile: 3 samples per prompt
        assert table.select("prompt_id", "sample_idx").is_duplicated().sum() == 0
        assert table.equals(in_process[asset]), asset  # same rows, texts, scores and order
    # one job per model step, both finished; light steps (prompts) stayed in Dagster
    names = sorted(fields["JobName"] for fields in jobs.values())
    assert names == ["croco-generation", "croco-scoring"]
    assert {fields["JobState"] for fields in jobs.values()} == {"COMPLETED"}
    # the job's id, node and time are the step's metadata; its log lines are in the Dagster run
    for asset, name in (("generations", "croco-generation"), ("reward_scores", "croco-scoring")):
        metadata = project.metadata(asset)
        [job_id] = [job for job, fields in jobs.items() if fields["JobName"] == name]
        assert metadata["slurm_job_id"] == job_id and metadata["slurm_node"] == socket.gethostname()
        assert metadata["slurm_seconds"] > 0
    messages = project.log_messages()
    for job_id in jobs:
        assert any(message.startswith(f"SLURM job {job_id} on ") and "running" in message for message in messages)
    assert any(message.startswith("chunk 6/6 done") for message in messages)  # progress from inside the job


def test_a_cancelled_job_resumes_from_its_staged_chunks(cluster, tmp_path, tiny_environ, in_process):
    project = Project(tmp_path, cluster, tiny_environ)
    run = project.start(name="cancelled")
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not staged_chunks(project.storage, LANGUAGE):
            assert run.process.poll() is None, f"the run ended before staging a chunk:\n{project.output('cancelled')}"
            assert time.monotonic() < deadline, f"no chunk staged in {TIMEOUT_S} s:\n{project.output('cancelled')}"
            time.sleep(0.02)
        [job_id] = [
            job
            for job, fields in cluster.jobs().items()
            if fields["JobName"] == "croco-generation" and fields["JobState"] == "RUNNING"
        ]
        cluster.run("scancel", job_id)
        returncode = run.process.wait(timeout=TIMEOUT_S)
    finally:
        run.kill_group()
    output = project.output("cancelled")
    assert returncode != 0 and "RUN_SUCCESS" not in output
    assert cluster.jobs()[job_id]["JobState"] == "CANCELLED"
    assert any(f"SLURM job {job_id} for generation ended CANCELLED" in error for error in project.step_failures())
    staged = {path.name: pl.read_parquet(path) for path in staged_chunks(project.storage, LANGUAGE)}
    assert 1 <= len(staged) < PROMPTS, sorted(staged)
    assert not (project.storage / "generations" / f"language={LANGUAGE}" / "data.parquet").exists()

    returncode, output = project.materialize(name="resumed")
    assert returncode == 0, output[-6000:]
    metadata = project.metadata("generations")
    assert (metadata["chunks_reused"], metadata["chunks_computed"]) == (len(staged), PROMPTS - len(staged))
    generations = _table(project.storage, "generations")
    assert generations.select("prompt_id", "sample_idx").is_duplicated().sum() == 0
    assert generations.equals(in_process["generations"])  # nothing lost, nothing duplicated, same samples
    assert _table(project.storage, "reward_scores").equals(in_process["reward_scores"])
    for chunk in staged.values():  # the chunks staged before the cancel are in the final table as they were
        assert generations.filter(pl.col("prompt_id") == chunk["prompt_id"][0]).equals(chunk)
    assert not staged_chunks(project.storage, LANGUAGE)


def test_a_job_that_fails_on_the_node_fails_the_step_with_its_job_id(cluster, tmp_path, tiny_environ):
    missing = tmp_path / "no-such-reward-model"
    project = Project(tmp_path, cluster, tiny_environ, CROCO_REWARD_MODEL=missing)
    before = set(cluster.jobs())
    returncode, output = project.materialize()
    assert returncode != 0
    failed = {
        job: fields for job, fields in cluster.jobs().items() if job not in before and fields["JobState"] == "FAILED"
    }
    [(job_id, fields)] = failed.items()
    assert fields["JobName"] == "croco-scoring" and fields["ExitCode"] != "0:0"
    [error] = project.step_failures()
    assert f"SLURM job {job_id} for scoring ended FAILED" in error
    assert "no-such-reward-model" in error and "Traceback" in error  # the node's traceback, in the Dagster run
    assert f"SLURM job {job_id} for scoring ended FAILED" in output


def test_cancelling_the_dagster_run_cancels_the_job(cluster, tmp_path, tiny_environ):
    project = Project(tmp_path, cluster, tiny_environ)
    run = project.start(name="interrupted")
    try:
        deadline = time.monotonic() + TIMEOUT_S
        running = []
        while not running or not staged_chunks(project.storage, LANGUAGE):
            assert run.process.poll() is None, project.output("interrupted")
            assert time.monotonic() < deadline, f"no running generation job:\n{project.output('interrupted')}"
            running = [
                job
                for job, fields in cluster.jobs().items()
                if fields["JobName"] == "croco-generation" and fields["JobState"] == "RUNNING"
            ]
            time.sleep(0.05)
        os.kill(run.pid, signal.SIGINT)  # what Ctrl-C, or terminating the run, does to the run's process
        run.process.wait(timeout=120)
    finally:
        run.kill_group()
    [job_id] = running
    deadline = time.monotonic() + 60
    while cluster.jobs()[job_id]["JobState"] != "CANCELLED":
        assert time.monotonic() < deadline, cluster.jobs()[job_id]
        time.sleep(0.2)
    assert f"SLURM job {job_id} cancelled (scancel) because the step was interrupted" in project.output("interrupted")


def test_training_and_evaluation_run_as_slurm_jobs(slurm_run, cluster):
    project, _ = slurm_run
    before = set(cluster.jobs())
    # one step's own request replaces its kind's (the tiny profile asks for 30 minutes per job)
    project.env["CROCO_SLURM_STEPS"] = json.dumps({"dpo_checkpoint": {"cpus": 1, "mem": "1G", "time": "00:20:00"}})
    returncode, output = project.materialize(
        "preference_pairs,unpaired_prompts,sft_records,dpo_checkpoint,base_answers,base_evaluation,evaluation,"
        "evaluation_judgments",
        name="train_and_evaluate",
    )
    assert returncode == 0, output[-6000:]
    jobs = {job: fields for job, fields in cluster.jobs().items() if job not in before}
    assert sorted((fields["JobName"], fields["TimeLimit"]) for fields in jobs.values()) == [
        ("croco-evaluation", "00:30:00"),
        ("croco-evaluation", "00:30:00"),
        ("croco-training", "00:20:00"),
    ]
    assert {fields["JobState"] for fields in jobs.values()} == {"COMPLETED"}
    checkpoint = _table(project.storage, "dpo_checkpoint")
    folder = Path(checkpoint["checkpoint_path"][0])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["num_steps"] == 2 and manifest["tracking"]["tracker"] == "trackio"
    assert project.metadata("dpo_checkpoint")["slurm_job_id"] in jobs
    assert project.metadata("evaluation")["slurm_job_id"] in jobs
    assert "| win_rate |" in (folder / "README.md").read_text()  # the card got the evaluation
    assert _table(project.storage, "evaluation")["win_rate"].is_finite().all()


def test_a_job_folder_made_writable_by_others_makes_the_step_refuse(cluster, tmp_path, monkeypatch):
    """A real job computes 21 * 2; before the step reads the result, the job folder is opened to everyone:
    the step refuses with the reason instead of unpickling what anyone could have put there."""
    real_wait = slurm.wait
    opened: list[Path] = []

    def wait_then_open_the_folder(job_id, *args, **kwargs):
        final = real_wait(job_id, *args, **kwargs)
        [folder] = [path.parent for path in (tmp_path / "jobs").rglob("job.sh")]
        folder.chmod(0o777)
        opened.append(folder)
        return final

    @dagster.asset
    def doubled(context, compute: ComputeResource) -> Output[int]:
        return Output(compute.call(context, "training", operator.mul, 21, 2))

    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    monkeypatch.setattr(slurm, "wait", wait_then_open_the_folder)
    monkeypatch.chdir(tmp_path)
    compute = ComputeResource(slurm=True, slurm_work_dir=str(tmp_path / "jobs"), slurm_poll_seconds=0.2)
    result = materialize([doubled], resources={"compute": compute}, raise_on_error=False)
    assert opened and not result.success
    [failure] = [event.step_failure_data.error.to_string() for event in result.all_events if event.is_step_failure]
    assert f"{opened[0]} is writable by group and others (mode 0777)" in failure
    assert "Refusing to read the job folder's pickle" in failure
