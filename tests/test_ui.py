"""The Dagster web UI in a real (headless) browser: what a user sees and does after ``make ui``.

Starts ``dg dev`` (what ``make ui`` runs) on a free loopback port with a temporary DAGSTER_HOME, the
``tiny`` profile and temporary storage, then drives Debian's Chromium through Playwright: the catalogue
and the asset graph show the pipeline's stages, the ``language`` partitions are listed, and one
partition of ``prompts`` is materialised from the asset page (Materialize… → partition → Launch). The
run must succeed and write its Hive-partitioned Parquet file.

Screenshots go to the test's ``tmp_path`` and, when ``CROCO_UI_SCREENSHOTS`` names a folder, there too.
Needs Chromium (``scripts/ci_system_deps.sh`` installs it); skipped with a message when it is absent.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

REPO = Path(__file__).resolve().parents[1]
LANGUAGES = ["da", "ga"]
PIPELINE_ASSETS = ["prompts", "generations", "reward_scores", "preference_pairs", "dpo_checkpoint", "evaluation"]
SERVER_START_TIMEOUT_S = 180  # dg dev imports the code location in several processes; 2 shared cores
RUN_TIMEOUT_S = 120
UI_TIMEOUT_MS = 60_000
VIEWPORT = {"width": 1600, "height": 1000}


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = _find_chromium()
pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Chromium is not installed: the UI test needs it (run scripts/ci_system_deps.sh as root, "
        "or `apt-get install chromium`)",
    ),
]

# Playwright's own browser download is not used (no downloads here): it drives the system Chromium.
from playwright.sync_api import expect, sync_playwright  # noqa: E402

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, whatever *_proxy says


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "<no log>"


def _stop(process: subprocess.Popen) -> None:
    """Stop dagster dev by its pid (graceful SIGINT), then kill whatever is left of its process group."""
    if process.poll() is None:
        try:
            os.kill(process.pid, signal.SIGINT)
            process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:  # code server, daemon, webserver and run workers share the group started for dagster dev
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait(timeout=10)


def _failure_report(instance: DagsterInstance, run_id: str) -> str:
    """The run's last messages and the errors of its failed steps."""
    entries = instance.all_logs(run_id)
    lines = [entry.message for entry in entries[-10:]]
    for entry in entries:
        if entry.dagster_event is not None and entry.dagster_event.event_type == DagsterEventType.STEP_FAILURE:
            lines.append(entry.dagster_event.step_failure_data.error.to_string())
    return "\n".join(lines)


class DagsterUI:
    def __init__(self, url: str, home: Path, storage: Path, log: Path):
        self.url, self.home, self.storage, self.log = url, home, storage, log

    def instance(self) -> DagsterInstance:
        return DagsterInstance.from_config(str(self.home))


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory, tiny_policy_path, tiny_reward_model_path):
    root = tmp_path_factory.mktemp("dagster_ui")
    home, storage, log = root / "dagster_home", root / "croco_data", root / "dagster_dev.log"
    home.mkdir()
    # No telemetry, and no "join the community" pop-up over the page on first visit.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    with DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("language", LANGUAGES)

    port = _free_port()
    env = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        CROCO_PROFILE="tiny",
        CROCO_POLICY_MODEL=str(tiny_policy_path),
        CROCO_REWARD_MODEL=str(tiny_reward_model_path),
        CROCO_STORAGE=str(storage),
        VIRTUAL_ENV=sys.prefix,  # as `make ui` sets it: dg warns when the project's environment is not the active one
    )
    command = [str(Path(sys.executable).with_name("dg")), "dev", "-h", "127.0.0.1", "-p", str(port)]
    with log.open("wb") as log_file:
        # Own process group (so teardown can reach every child), and SIGINT back to default: a shell
        # that starts jobs in the background ignores it, and dg dev would then never stop.
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"dg dev exited with {process.returncode}:\n{_tail(log)}")
            try:
                with _NO_PROXY.open(url + "/server_info", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"dg dev did not answer within {SERVER_START_TIMEOUT_S} s:\n{_tail(log)}")
                time.sleep(0.5)
        # `dagster dev` warns that `dg dev` supersedes it; `make ui` must not show that warning.
        assert "superseded" not in log.read_text(errors="replace").lower(), _tail(log)
        yield DagsterUI(url, home, storage, log)
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def shot(tmp_path):
    """shot(page, name) saves a screenshot to tmp_path and to $CROCO_UI_SCREENSHOTS when set."""
    extra = os.environ.get("CROCO_UI_SCREENSHOTS")
    folders = [tmp_path] + ([Path(extra)] if extra else [])

    def save(page, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=path)
        for folder in folders[1:]:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / path.name)
        return path

    return save


def _catalog_row(page, asset: str):
    """The catalogue's row of ``asset``: the innermost element that holds both its checkbox and its link."""
    link = page.locator(f'a[href="/assets/{asset}"]')
    return page.locator("div").filter(has=page.get_by_test_id(f"checkbox-{asset}")).filter(has=link).last


def _lineage_graph(page):
    """The asset graph on the page (an SVG image whose nodes are HTML inside ``foreignObject``)."""
    return page.get_by_role("img").filter(has=page.locator("foreignObject"))


def _graph_node_names(page) -> list[str]:
    """The name of each node of the asset graph on the page, the nodes of other groups (links out, with an
    "open_in_new" icon) left out. A node's first line is its name, whether the graph is zoomed out
    (the name alone) or in (its latest event, checks and partitions below it)."""
    nodes = _lineage_graph(page).locator("foreignObject").filter(has_not=page.get_by_role("img", name="open_in_new"))
    return [text.splitlines()[0] if text.strip() else "" for text in nodes.locator("xpath=./*").all_inner_texts()]


def _graph_node_matches(text: str, name: str) -> bool:
    """Asset graph nodes middle-truncate long names ("cross_la…_unpaired")."""
    text = text.strip()
    if text == name:
        return True
    if "…" in text:
        head, _, tail = text.partition("…")
        return name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail)
    return False


def test_catalog_graph_and_partitions_show_the_pipeline(dagster_ui, page, shot):
    # Catalogue: every stage is listed once the code location has loaded.
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 1400})  # the whole list in one shot
    page.goto(dagster_ui.url + "/assets")
    for asset in PIPELINE_ASSETS:
        # A catalogue row: its checkbox, a link to the asset page, and the status column, where each
        # per-language stage reports the two language partitions.
        row = _catalog_row(page, asset)
        expect(row.locator(f'a[href="/assets/{asset}"]')).to_be_visible(timeout=UI_TIMEOUT_MS)
        row.scroll_into_view_if_needed()
        expect(row).to_contain_text("2 partitions", timeout=UI_TIMEOUT_MS)
    page.get_by_text("Asset name", exact=True).scroll_into_view_if_needed()
    shot(page, "01_asset_catalog")
    page.set_viewport_size(VIEWPORT)

    # The asset graph of each group (the global graph collapses groups): one node per stage.
    texts = []
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 2600})  # the graph renders on-screen nodes only
    for group, visible in (("croco", "dpo_checkpoint"), ("evaluation", "base_answers")):
        page.goto(dagster_ui.url + f"/locations/croco/asset-groups/{group}")
        expect(_lineage_graph(page).get_by_text(visible, exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)
        texts += _graph_node_names(page)
        shot(page, f"02_asset_graph_{group}")
    page.set_viewport_size(VIEWPORT)
    for asset in PIPELINE_ASSETS:
        assert any(_graph_node_matches(text, asset) for text in texts), (asset, texts)

    # The language partitions of a stage.
    page.goto(dagster_ui.url + "/assets/prompts?view=partitions")
    expect(page.get_by_text("2 Partitions Selected")).to_be_visible(timeout=UI_TIMEOUT_MS)
    for language in LANGUAGES:
        expect(page.get_by_text(language, exact=True).first).to_be_visible()
    shot(page, "03_prompts_partitions")


def test_materialize_one_prompts_partition_from_the_ui(dagster_ui, page, shot):
    page.goto(dagster_ui.url + "/assets/prompts")
    page.get_by_role("button", name="Materialize…").click(timeout=UI_TIMEOUT_MS)
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Launch runs to materialize prompts")).to_be_visible()
    # Partition selector: open it, tick "da" (both languages are offered), close it.
    dialog.get_by_text("Select a partition or create one").click()
    for language in LANGUAGES:
        expect(page.get_by_role("menuitem").filter(has=page.locator(f'[data-tooltip="{language}"]'))).to_be_visible()
    page.get_by_role("menuitem").filter(has=page.locator('[data-tooltip="da"]')).click()
    page.keyboard.press("Escape")
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    shot(page, "04_materialize_dialog_da")
    dialog.get_by_role("button", name="Launch 1 run").click()

    # The toast links to the run.
    toasts = page.get_by_role("region", name=re.compile("Notifications"))
    expect(toasts.get_by_text("Launched run")).to_be_visible(timeout=UI_TIMEOUT_MS)
    toasts.get_by_role("link", name="View", exact=True).click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"), timeout=UI_TIMEOUT_MS)
    run_id = re.search(r"/runs/([0-9a-f-]{36})", page.url).group(1)

    with dagster_ui.instance() as instance:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            run = instance.get_run_by_id(run_id)
            if run.is_finished:
                break
            assert time.monotonic() < deadline, f"run {run_id} still {run.status} after {RUN_TIMEOUT_S} s"
            time.sleep(1)
        if run.status != DagsterRunStatus.SUCCESS:
            pytest.fail(
                f"run {run_id} ended {run.status}:\n{_failure_report(instance, run_id)}\n{_tail(dagster_ui.log)}"
            )
        assert run.tags.get("dagster/partition") == "da"
        assert run.tags.get("dagster/from_ui") == "true"

    # The run page says so too, and shows the materialisation event.
    expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("ASSET_MATERIALIZATION").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    shot(page, "05_run_success")

    parquet = dagster_ui.storage / "prompts" / "language=da" / "data.parquet"
    assert parquet.is_file()
    assert not (dagster_ui.storage / "prompts" / "language=ga").exists()

    # The asset's partitions view: da materialised, ga still missing.
    page.goto(dagster_ui.url + "/assets/prompts?view=partitions")
    expect(page.get_by_text("Materialized (1)")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("Missing (1)")).to_be_visible()
    page.get_by_text("da", exact=True).first.click()
    expect(page.get_by_text("language=da/data.parquet").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    shot(page, "06_prompts_da_materialized")
