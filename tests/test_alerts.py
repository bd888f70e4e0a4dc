"""`promtool test rules` on the chart's alerts (tests/chart/alerts/alerts-test.yaml): every alert fires on
real-shaped series and stays quiet where it must. promtool comes from Debian's `prometheus` package
(ci/install-promtool.sh puts it in .venv/bin); the test fails when it is missing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from .chart.rendered import REPO, helm_template, load_all

ALERTS = Path(__file__).parent / "chart" / "alerts" / "alerts-test.yaml"


def promtool() -> str:
    found = shutil.which("promtool", path=f"{REPO / '.venv' / 'bin'}:/usr/bin:/usr/local/bin")
    assert found, "promtool not found: run ci/install-promtool.sh .venv/bin (Debian package prometheus)"
    return found


def test_every_alert_has_a_promtool_unit_test(tmp_path: Path) -> None:
    docs = load_all(helm_template([REPO / "values" / "7b.yaml"]))
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    shutil.copy(ALERTS, tmp_path / "alerts-test.yaml")
    out = subprocess.run(
        [promtool(), "test", "rules", "alerts-test.yaml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    tested = {t["alertname"] for case in yaml.safe_load(ALERTS.read_text())["tests"] for t in case["alert_rule_test"]}
    fired = {
        t["alertname"]
        for case in yaml.safe_load(ALERTS.read_text())["tests"]
        for t in case["alert_rule_test"]
        if t["exp_alerts"]
    }
    assert alerts == tested == fired
