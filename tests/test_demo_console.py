"""`croco demo`'s console: one line per step on the terminal, library chatter and Dagster's event log
in the log file. Runs a real two-asset Dagster job in a child process whose output is captured."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from pathlib import Path
    from dagster import Definitions, asset, define_asset_job, DagsterInstance

    from croco_pipeline.commands.demo_console import DemoConsole

    @asset
    def first(context):
        context.log.info("chunk 1/2 done (0 reused)")
        logging.getLogger("vllm").info("engine configuration that nobody should read")
        print("a library printing to stdout")
        return 1

    @asset
    def second(first):
        return first + 1

    @asset
    def broken(second):
        raise ValueError("the input file x.jsonl has no prompt column")

    job = Definitions(assets=[first, second, broken], jobs=[define_asset_job("j")]).resolve_job_def("j")
    with DemoConsole(Path(sys.argv[1])) as console:
        console.print("hello from the demo")
        console.start_run("j", "da")
        run = job.with_logger_defs({"croco_console": console.dagster_logger()}).execute_in_process(
            instance=DagsterInstance.ephemeral(), run_config={"loggers": {"croco_console": {}}},
            raise_on_error=False,
        )
        console.print(f"success={run.success}")
    print("after the console: back on stdout")
    """
)


def test_demo_console_prints_step_lines_and_logs_the_rest(tmp_path):
    log = tmp_path / "demo.log"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(log)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "hello from the demo"
    step_lines = [line.split() for line in lines if line.startswith("  da")]
    assert [words[1] for words in step_lines] == ["first", "second", "broken"]
    assert all(words[3] == "s" and float(words[2]) >= 0 for words in step_lines)
    assert "FAILED: ValueError: the input file x.jsonl has no prompt column" in lines[3]
    assert lines[4:] == ["success=False", "after the console: back on stdout"]
    assert "engine configuration" not in result.stdout + result.stderr  # library INFO is held back
    logged = log.read_text()
    assert "a library printing to stdout" in logged and "STEP_SUCCESS" in logged and "chunk 1/2 done" in logged
