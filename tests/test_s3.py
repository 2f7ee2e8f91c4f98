"""S3 storage, for real: the pipeline against a local ``moto_server`` (an S3-compatible HTTP server).

The module's server *enforces credentials* (moto's ``INITIAL_NO_AUTH_ACTION_COUNT``): the first three
requests create an IAM user, its access key and an ``s3:*`` policy without authentication, and every
request after that must be signed with that key. So the whole run below uses a real key pair, and a
wrong secret or an unknown key is refused as AWS would refuse it.

* croco_job for two languages writes ``croco/<asset>/language=<code>/data.parquet`` and
  ``croco/checkpoints/...``, ``croco sql`` reads the pairs back, and the staging area ends empty;
* a bucket that does not exist, wrong credentials and an unreachable endpoint each fail the run with
  a message saying what to fix, and write nothing anywhere;
* the server going away in the middle of the generations step fails it clearly, and every object that
  existed at that moment was a whole Parquet file;
* the secret access key never appears in Dagster's event log, the run record or the console output.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, Definitions, EnvVar
from dagster._serdes import serialize_value

from croco_pipeline.core.io import atomic, storage
from croco_pipeline.definitions import ALL_ASSETS, JOBS, build_resources
from croco_pipeline.partitions import language_partitions
from croco_pipeline.resources.storage import ParquetIOManager, StorageResource, s3_env_fields

pytestmark = pytest.mark.system  # starts moto_server, an S3-compatible HTTP server
boto3 = pytest.importorskip("boto3")
MOTO_SERVER = Path(sys.executable).with_name("moto_server")
if not MOTO_SERVER.exists():
    pytest.skip("moto_server is not installed (pip install 'moto[server]')", allow_module_level=True)

LANGUAGES = ["da", "ga"]
BUCKET = "croco-test"
REGION = "us-east-1"
S3_VARIABLES = [
    "CROCO_S3_ENDPOINT_URL",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MotoServer:
    """A ``moto_server`` on 127.0.0.1 in its own process group, stopped by its pid."""

    def __init__(self, port: int | None = None, enforce_auth: bool = False):
        self.port = port or _free_port()
        self.enforce_auth = enforce_auth
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MotoServer":
        env = {key: value for key, value in os.environ.items() if key not in S3_VARIABLES}
        if self.enforce_auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"  # create user, access key, policy; then signed only
        self.process = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto_server did not answer within 30 s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def client(self, service: str, key: str, secret: str):
        return boto3.client(
            service, endpoint_url=self.url, region_name=REGION, aws_access_key_id=key, aws_secret_access_key=secret
        )


def _create_user(server: MotoServer) -> tuple[str, str]:
    """An IAM user allowed s3:* (the three unauthenticated requests the server allows)."""
    iam = server.client("iam", "bootstrap", "bootstrap")
    iam.create_user(UserName="croco")
    key = iam.create_access_key(UserName="croco")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="croco", PolicyName="s3", PolicyDocument=json.dumps(policy))
    return key["AccessKeyId"], key["SecretAccessKey"]


def _set_env(mp: pytest.MonkeyPatch, server: MotoServer, key: str, secret: str) -> None:
    for variable in S3_VARIABLES:
        mp.delenv(variable, raising=False)
    mp.setenv("CROCO_S3_ENDPOINT_URL", server.url)
    mp.setenv("AWS_ACCESS_KEY_ID", key)
    mp.setenv("AWS_SECRET_ACCESS_KEY", secret)
    mp.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture(scope="module")
def s3():
    """The credential-enforcing server with bucket ``croco-test``; the S3 variables point at it."""
    server = MotoServer(enforce_auth=True).start()
    try:
        key, secret = _create_user(server)
        client = server.client("s3", key, secret)
        client.create_bucket(Bucket=BUCKET)
        with pytest.MonkeyPatch.context() as mp:
            _set_env(mp, server, key, secret)
            yield {"server": server, "client": client, "key": key, "secret": secret}
    finally:
        server.stop()


def _keys(client, bucket: str, prefix: str = "") -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def _definitions(tiny_environ, base: str, env_fields: bool = False, **overrides) -> Definitions:
    """The project's assets and jobs with the tiny profile on ``base``; with ``env_fields`` the storage
    resources get the S3 settings as ``EnvVar`` fields (as definitions.py can set them)."""
    resources = build_resources(environ=tiny_environ(base, **overrides))
    if env_fields:
        resources["io_manager"] = ParquetIOManager(base_path=base, **s3_env_fields())
        resources["storage_base"] = StorageResource(base_path=base, **s3_env_fields())
    return Definitions(assets=ALL_ASSETS, jobs=JOBS, resources=resources)


def _instance() -> DagsterInstance:
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(language_partitions.name, LANGUAGES)
    return instance


def _run(definitions: Definitions, instance: DagsterInstance, language: str, assets: list[str] | None = None):
    job = definitions.resolve_job_def("croco_job")
    selection = [AssetKey(name) for name in assets] if assets else None
    return job.execute_in_process(
        partition_key=language, instance=instance, raise_on_error=False, asset_selection=selection
    )


def _failure_text(result) -> str:
    """Every step and run failure of a result, causes included."""
    texts = []
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)  # step, resource-init and run failures
        if error is not None:
            texts.append(error.to_string())
    return "\n".join(texts)


def _recorded_text(instance: DagsterInstance, run_id: str) -> str:
    """All Dagster keeps of a run: its record and every event-log entry, serialised."""
    parts = [serialize_value(instance.get_run_by_id(run_id))]
    parts += [serialize_value(entry) for entry in instance.all_logs(run_id)]
    return "\n".join(parts)


@pytest.fixture(scope="module")
def s3_run(s3, tiny_environ, tmp_path_factory):
    """croco_job for da and ga on ``s3://croco-test/croco``, storage settings given as EnvVar fields,
    started from an empty working directory (to show nothing falls back to local disk)."""
    base = f"s3://{BUCKET}/croco"
    # transformers generation: no vLLM engine start per step (test_pipeline covers vLLM); this is about S3
    definitions = _definitions(tiny_environ, base, env_fields=True, CROCO_GENERATOR_BACKEND="transformers")
    instance = _instance()
    workdir = tmp_path_factory.mktemp("s3_run_cwd")
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        results = {language: _run(definitions, instance, language) for language in LANGUAGES}
    print(f"croco_job on S3 for {LANGUAGES}: {time.monotonic() - started:.0f} s")
    return {"base": base, "results": results, "instance": instance, "workdir": workdir}


def test_croco_job_writes_hive_partitions_and_checkpoints_to_s3(s3, s3_run):
    results = s3_run["results"]
    assert {language: _failure_text(result) for language, result in results.items() if not result.success} == {}
    keys = _keys(s3["client"], BUCKET)
    for language, result in results.items():
        materialized = {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}
        assert {
            "prompts",
            "generations",
            "reward_scores",
            "preference_pairs",
            "dpo_checkpoint",
            "evaluation",
        } <= materialized
        for asset in materialized:
            assert f"croco/{asset}/language={language}/data.parquet" in keys, (asset, language)
        prefix = f"croco/checkpoints/dpo_checkpoint/language={language}/"
        adapter_files = [key for key in keys if key.startswith(prefix)]
        assert {f"{prefix}{name}" for name in ["adapter_config.json", "manifest.json"]} <= set(adapter_files), (
            adapter_files
        )
        checkpoint = storage.read_parquet(
            f"{s3_run['base']}/dpo_checkpoint/language={language}/data.parquet",
            storage.storage_options_for(s3_run["base"]),
        )
        assert checkpoint["checkpoint_path"][0] == f"{s3_run['base']}/checkpoints/dpo_checkpoint/language={language}"
    # no temporary objects; the staging area is empty
    assert not [key for key in keys if key.endswith(".tmp")]
    assert _keys(s3["client"], BUCKET, "croco/_staging/") == []
    # nothing fell back to the local disk
    assert list(s3_run["workdir"].iterdir()) == []


def test_croco_sql_reads_the_pairs_from_s3(s3, s3_run, croco):
    query = "SELECT language, count(*) AS n FROM preference_pairs GROUP BY 1 ORDER BY 1"
    completed = croco("sql", query, "--storage", s3_run["base"], "--format", "json", timeout=300)
    assert completed.returncode == 0, completed.stderr
    counts = {row["language"]: row["n"] for row in json.loads(completed.stdout)}
    expected = {}
    for language in LANGUAGES:
        body = (
            s3["client"]
            .get_object(Bucket=BUCKET, Key=f"croco/preference_pairs/language={language}/data.parquet")["Body"]
            .read()
        )
        expected[language] = pl.read_parquet(io.BytesIO(body)).height
    assert counts == expected and all(n >= 1 for n in counts.values())
    assert s3["secret"] not in completed.stdout + completed.stderr


def test_the_secret_is_never_logged(s3, s3_run, tiny_environ, capfd, caplog):
    instance = s3_run["instance"]
    for result in s3_run["results"].values():
        recorded = _recorded_text(instance, result.run_id)
        assert "preference_pairs" in recorded  # the check below looks at real content
        assert s3["secret"] not in recorded
    # a run with the secret from the environment (no resource fields), watched on the console as well
    definitions = _definitions(tiny_environ, f"s3://{BUCKET}/croco-logged")
    result = _run(definitions, instance, "da", ["prompts"])
    assert result.success, _failure_text(result)
    captured = capfd.readouterr()
    assert "prompts" in captured.out + captured.err + caplog.text
    for text in [captured.out, captured.err, caplog.text, _recorded_text(instance, result.run_id)]:
        assert s3["secret"] not in text


def test_a_missing_bucket_fails_clearly_and_writes_nothing(s3, tiny_environ, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    buckets_before = [bucket["Name"] for bucket in s3["client"].list_buckets()["Buckets"]]
    objects_before = _keys(s3["client"], BUCKET)
    definitions = _definitions(tiny_environ, "s3://croco-no-such-bucket/croco")
    result = _run(definitions, _instance(), "da")
    assert not result.success
    message = _failure_text(result)
    assert "S3 bucket 'croco-no-such-bucket' does not exist (storage base s3://croco-no-such-bucket/croco)" in message
    assert "create it or fix CROCO_STORAGE" in message
    # the bucket was not created on the way, nothing was written to S3 or to the local disk
    assert [bucket["Name"] for bucket in s3["client"].list_buckets()["Buckets"]] == buckets_before
    assert _keys(s3["client"], BUCKET) == objects_before
    assert list(tmp_path.iterdir()) == []
    assert s3["secret"] not in message


@pytest.mark.parametrize("wrong", ["secret", "key"])
def test_wrong_credentials_fail_clearly_and_write_nothing(s3, wrong, tiny_environ, monkeypatch):
    """moto enforces credentials here (see the module docstring): a wrong secret or an unknown key is refused."""
    bad = "wrong-secret-0123456789abcdefghijklmnopqrstuv"
    if wrong == "secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", bad)
    else:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNUNKNOWN00")
    definitions = _definitions(tiny_environ, f"s3://{BUCKET}/croco-badcreds")
    result = _run(definitions, _instance(), "da", ["prompts"])
    assert not result.success
    message = _failure_text(result)
    assert f"S3 refused access to bucket '{BUCKET}' at {s3['server'].url}" in message
    assert "Check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in message
    assert bad not in message and s3["secret"] not in message
    assert _keys(s3["client"], BUCKET, "croco-badcreds/") == []


def test_an_unreachable_endpoint_fails_clearly(s3, tiny_environ, monkeypatch):
    endpoint = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    monkeypatch.setenv("CROCO_S3_ENDPOINT_URL", endpoint)
    definitions = _definitions(tiny_environ, f"s3://{BUCKET}/croco-unreachable")
    result = _run(definitions, _instance(), "da", ["prompts"])
    assert not result.success
    message = _failure_text(result)
    assert f"Cannot reach the S3 endpoint {endpoint}" in message
    assert "Check CROCO_S3_ENDPOINT_URL" in message


def test_the_server_going_away_mid_step_fails_clearly_and_leaves_only_whole_objects(tiny_environ, monkeypatch):
    """Its own plain server: prompts[da] is written, then the server stops inside the generations step
    (samples generated, about to stage the first chunk)."""
    server = MotoServer().start()
    try:
        client = server.client("s3", "testing", "testing")
        client.create_bucket(Bucket="croco-midrun")
        _set_env(monkeypatch, server, "testing", "testing")
        definitions = _definitions(
            tiny_environ, "s3://croco-midrun/croco", CROCO_GENERATOR_BACKEND="transformers"
        )  # no vLLM start: the test is about S3
        instance = _instance()
        assert _run(definitions, instance, "da", ["prompts"]).success

        at_stop: dict[str, bytes] = {}
        stopped_at: list[float] = []
        write = atomic.write_parquet

        def stop_server_then_write(frame, path, storage_options=None):
            if "/_staging/generations/" in path and server.process.poll() is None:
                for key in _keys(client, "croco-midrun"):
                    at_stop[key] = client.get_object(Bucket="croco-midrun", Key=key)["Body"].read()
                server.stop()
                stopped_at.append(time.monotonic())
            return write(frame, path, storage_options)

        monkeypatch.setattr(atomic, "write_parquet", stop_server_then_write)
        result = _run(definitions, instance, "da", ["generations"])
        failed_after = time.monotonic() - stopped_at[0]
        assert server.process.poll() is not None, "the step never reached its first staged chunk"
        assert not result.success
        message = _failure_text(result)
        assert (
            f"Cannot reach the S3 endpoint {server.url} (writing s3://croco-midrun/croco/_staging/generations/"
            in message
        )
        assert failed_after < 60  # retries are bounded: the lost server does not hang the step
        # when the server went away it held only prompts[da], whole; no generations object was begun
        assert list(at_stop) == ["croco/prompts/language=da/data.parquet"]
        assert pl.read_parquet(io.BytesIO(at_stop["croco/prompts/language=da/data.parquet"])).height > 0
        # a server started again on the same port (moto keeps no state) holds nothing partial either
        server.start()
        assert [bucket["Name"] for bucket in client.list_buckets()["Buckets"]] == []
    finally:
        server.stop()


def test_envvar_fields_on_the_storage_resources_override_the_environment(s3, monkeypatch):
    """Settings given as ``EnvVar`` fields win over the default variables: with those pointing at
    nothing, the run still reaches the server through the fields."""
    monkeypatch.setenv("CROCO_TEST_ENDPOINT", s3["server"].url)
    monkeypatch.setenv("CROCO_TEST_KEY", s3["key"])
    monkeypatch.setenv("CROCO_TEST_SECRET", s3["secret"])
    monkeypatch.setenv("CROCO_S3_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNUNKNOWN00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    base = f"s3://{BUCKET}/croco-fields"
    fields = {
        "s3_endpoint_url": EnvVar("CROCO_TEST_ENDPOINT"),
        "aws_access_key_id": EnvVar("CROCO_TEST_KEY"),
        "aws_secret_access_key": EnvVar("CROCO_TEST_SECRET"),
    }
    resources = {
        **build_resources(environ={"CROCO_PROFILE": "tiny", "CROCO_STORAGE": base}),
        "io_manager": ParquetIOManager(base_path=base, **fields),
        "storage_base": StorageResource(base_path=base, **fields),
    }
    definitions = Definitions(assets=ALL_ASSETS, jobs=JOBS, resources=resources)
    instance = _instance()
    result = _run(definitions, instance, "da", ["prompts"])
    assert result.success, _failure_text(result)
    assert _keys(s3["client"], BUCKET, "croco-fields/") == ["croco-fields/prompts/language=da/data.parquet"]
    assert s3["secret"] not in _recorded_text(instance, result.run_id)
    # s3_env_fields names only the variables that are set
    assert s3_env_fields({"CROCO_S3_ENDPOINT_URL": "http://x", "AWS_ACCESS_KEY_ID": ""}) == {
        "s3_endpoint_url": EnvVar("CROCO_S3_ENDPOINT_URL")
    }
