"""``hf-vcr train``, the flows inside the package and the shipped files, for every method.

--help of every script and every command, every shipped config parsed into its method's config, the
launcher's accelerate command line, shipped files addressable by name, thin scripts, no sys.path tricks.
(A wheel installed outside the repository: tests/test_wheel_install.py. 2 processes through the launcher:
tests/distributed/test_multi_gpu_scripts.py::test_eigv_script_erm_two_processes_match_one.)
"""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hf_vcr.cli import COMMANDS, EVALUATE
from hf_vcr.cli import main as cli_main
from hf_vcr.flows import METHODS, flow_module, load_recipe, resolve_argv, resolve_shipped, shipped_dir, shipped_names
from hf_vcr.flows.launcher import accelerate_command, split_launch_options

REPO = Path(__file__).resolve().parents[1]
# a field only that method's parser has
OWN_FIELD = {"vcr": "--tasks", "arc": "--kd_r_variant", "joint": "--coupling", "sort": "--sort_mode", "eigv": "--eigv_beta",
             "lskd": "--itm_weight", "critic": "--qa_mse_weight"}


def test_train_help_lists_every_method(capsys):
    assert cli_main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for method in METHODS:
        assert re.search(rf"^  {method}\s", out, re.M), method
    assert "--num_processes" in out and "--deepspeed" in out and "vcr_synthetic" in out


@pytest.mark.parametrize("method", list(METHODS))
def test_method_help_lists_every_field(method, capsys):
    assert cli_main(["train", method, "--help"]) == 0
    out = capsys.readouterr().out
    parser = flow_module(method).make_parser()
    fields = {a.option_strings[0] for a in parser._actions if a.option_strings and a.option_strings[0].startswith("--")}
    missing = [f for f in fields if f not in out]
    assert not missing, missing
    assert OWN_FIELD[method] in out and f"{method}_synthetic" in out


@pytest.mark.parametrize("method", list(METHODS))
def test_script_help_runs(method, monkeypatch, capsys):
    """scripts/train_<method>.py --help, as `python scripts/...` runs it (a % in a help string crashed argparse)."""
    monkeypatch.setattr(sys, "argv", [f"scripts/train_{method}.py", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "scripts" / f"train_{method}.py"), run_name="__main__")
    assert exit_info.value.code == 0
    assert OWN_FIELD[method] in capsys.readouterr().out


def test_joint_script_help_in_a_fresh_interpreter():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "train_joint.py"), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--loss_ratio" in proc.stdout


@pytest.mark.parametrize("argv", [["--help"], ["evaluate", "--help"], *[["evaluate", k, "--help"] for k in EVALUATE],
                                  *[[c, "--help"] for c in COMMANDS if c != "train"]], ids=" ".join)
def test_every_command_help_exits_zero(argv, capsys):
    try:
        code = cli_main(argv)
    except SystemExit as e:  # argparse's --help
        code = e.code
    assert code in (0, None), argv
    captured = capsys.readouterr()
    assert "usage" in captured.out.lower(), (argv, captured.out[:500], captured.err[:500])


@pytest.mark.parametrize("name", shipped_names())
def test_every_shipped_config_parses_and_forces_no_device(name, tmp_path):
    method = name.split("_")[0]
    assert method in METHODS, f"shipped config {name} names no method"
    path = resolve_shipped(name)
    assert Path(path).parent == Path(shipped_dir())
    values = yaml.safe_load(Path(path).read_text())
    assert "use_cpu" not in values and "no_cuda" not in values, f"{name} forces a device"
    parsed = load_recipe(method, name, ["--output_dir", str(tmp_path)])
    assert type(parsed[-1]).__name__ == flow_module(method).ARGUMENTS[-1].__name__
    for key, value in values.items():  # every key lands in one of the dataclasses with the file's value
        owners = [p for p in parsed if hasattr(p, key)]
        assert owners, (name, key)
        got = getattr(owners[0], key)
        if key != "output_dir" and not isinstance(got, (list, dict)) and type(got).__name__ not in ("IntervalStrategy", "SaveStrategy", "SchedulerType", "OptimizerNames"):
            assert got == value or str(got) == str(value), (name, key, got, value)


@pytest.mark.parametrize("method", list(METHODS))
def test_synthetic_configs_save_checkpoints_so_a_killed_run_resumes(method):
    values = yaml.safe_load(Path(resolve_shipped(f"{method}_synthetic")).read_text())
    assert values.get("save_strategy") not in (None, "no"), method
    assert values["output_dir"].startswith("runs/"), "one output root for every method"


def test_shipped_files_are_addressable_by_name_or_path(tmp_path):
    assert resolve_shipped("zero3", "deepspeed").endswith(os.path.join("deepspeed", "zero3.json"))
    assert resolve_shipped("multi_gpu", "accelerate").endswith(os.path.join("accelerate", "multi_gpu.yaml"))
    own = tmp_path / "mine.yaml"
    own.write_text("output_dir: x\n")
    assert resolve_shipped(str(own)) == str(own)
    with pytest.raises(FileNotFoundError, match="neither a file nor a shipped name.*vcr_synthetic"):
        resolve_shipped("vcr_synthetik")
    argv = resolve_argv(["eigv_synthetic", "--max_steps", "2", "--deepspeed", "zero2"])
    assert argv[0] == resolve_shipped("eigv_synthetic") and argv[-1] == resolve_shipped("zero2", "deepspeed")


def test_launcher_builds_the_accelerate_command():
    launch, rest = split_launch_options(["eigv_synthetic", "--num_processes", "2", "--max_steps=3", "--main_process_port=29555"])
    assert launch == {"--num_processes": "2", "--main_process_port": "29555"} and rest == ["eigv_synthetic", "--max_steps=3"]
    cmd = accelerate_command("eigv", launch, rest)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[3:] == ["--multi_gpu", "--num_processes", "2", "--main_process_port", "29555", "-m", "hf_vcr.flows.eigv",
                       "eigv_synthetic", "--max_steps=3"]
    cmd = accelerate_command("vcr", {"--accelerate_config": "multi_node", "--machine_rank": "1"}, ["vcr_synthetic"])
    assert cmd[3:5] == ["--config_file", resolve_shipped("multi_node", "accelerate")] and "--multi_gpu" not in cmd
    assert cmd[5:7] == ["--machine_rank", "1"]


def test_launcher_rejects_bad_input_before_starting_processes(tmp_path, capsys):
    assert cli_main(["train", "nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("output_dir: x\nmax_stepz: 3\n")
    assert cli_main(["train", "eigv", str(bad), "--num_processes", "2"]) == 2  # a typo in a yaml fails in this process
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "max_stepz" in err and len(err.strip().splitlines()) == 1
    # an unknown field too
    assert cli_main(["train", "eigv", "eigv_synthetic", "--max_stepz", "3", "--num_processes", "2", "--output_dir", str(tmp_path)]) == 2
    assert "max_stepz" in capsys.readouterr().err


def test_scripts_are_thin_entry_points():
    for path in sorted((REPO / "scripts").glob("*.py")):
        text = path.read_text()
        assert len(text.splitlines()) < 40, f"{path.name} has {len(text.splitlines())} lines"
    for method in METHODS:
        text = (REPO / "scripts" / f"train_{method}.py").read_text()
        assert f"from hf_vcr.flows.{method} import main" in text


def test_no_sys_path_manipulation_anywhere():
    offenders = []
    for folder in ("hf_vcr", "scripts", "benchmarks", "tests"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == Path(__file__).name:
                continue
            if re.search(r"sys\.path\.(insert|append)", path.read_text()):
                offenders.append(str(path.relative_to(REPO)))
    assert not offenders, offenders
