"""The study's grid and table: train.py's grid (--train-set both, --task both, --print-commands), evaluate.py
--table on hand-made results.json files, the published numbers, the bootstrap intervals and the plot."""
import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluate
import train
from conftest import REPO, one_line_error


def predictions(rng, n: int, rate: float) -> dict:
    right = rng.random(n) < rate
    return {"index": list(range(n)), "label": [1] * n, "pred": [1 if r else 0 for r in right]}


def write_run(folder, model, dataset, task, train_set, known, unknown, rng=None, n=200):
    """A results.json as a finished run writes it; with `rng`, per-video predictions of the given rates
    (the top-1 numbers then follow from them)."""
    result = {"model": model, "dataset": dataset, "task": task, "train_set": train_set}
    if rng is not None:
        preds = {f"val_set{train_set}": predictions(rng, n, known / 100), f"val_set{3 - train_set}": predictions(rng, n, unknown / 100)}
        known, unknown = (100 * np.mean(np.equal(p["label"], p["pred"])) for p in preds.values())
        result["predictions"] = preds
    result["top1"] = result["mean_class"] = evaluate.direction_metrics(float(known), float(unknown))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(evaluate.results_json(result))
    return result


def test_table_groups_runs_marks_incomplete_groups_and_sets_the_published_numbers_beside(tmp_path, capsys):
    runs = tmp_path / "runs"
    rng = np.random.default_rng(0)
    x3d = [write_run(runs / f"x3d_synta_coarse_set{s}", "x3d", "synta", "coarse", s, 90 + s, 50 + s, rng) for s in (1, 2)]
    write_run(runs / "xclip_k400ta_fine_set2", "xclip", "k400ta", "fine", 2, 80.0, 30.0)  # one direction, no predictions
    for appearance in ("coupled", "shared"):  # the main job's layout: two runs of one model, kept apart
        for s in (1, 2):
            write_run(runs / f"main_job_{appearance}" / f"set{s}", "i3d_small", "synta", "coarse", s, 40.0 + s, 10.0 * s)
    records = evaluate.main(["--table", str(runs), "--json", str(tmp_path / "t.json"), "--csv", str(tmp_path / "t.csv")])
    printed = capsys.readouterr().out

    by_name = {(r["task"], r["dataset"], evaluate.record_name(r)): r for r in records}
    x3d_row = by_name["coarse", "synta", "x3d"]
    assert x3d_row["complete"] and x3d_row["average"]["known"] == pytest.approx((x3d[0]["top1"]["known"] + x3d[1]["top1"]["known"]) / 2)
    assert x3d_row["average"]["hm"] == pytest.approx((x3d[0]["top1"]["hm"] + x3d[1]["top1"]["hm"]) / 2)  # HM per direction, then averaged
    paper = evaluate.read_published()["coarse", "x3d", "synta"]
    assert (paper["known"], paper["unknown"], paper["d_abs"], paper["hm"]) == (93.71, 58.45, 35.25, 71.79)
    assert {k: x3d_row["paper"][k] for k in evaluate.COLUMNS} == {k: paper[k] for k in evaluate.COLUMNS}
    assert x3d_row["difference"]["known"] == pytest.approx(x3d_row["average"]["known"] - 93.71)
    low, high = x3d_row["interval"]["known"]
    assert low < x3d_row["average"]["known"] < high and high - low < 10

    xclip = by_name["fine", "k400ta", "xclip"]
    assert not xclip["complete"] and xclip["average"] is None and xclip["difference"] is None and xclip["interval"] is None
    assert [d["train_set"] for d in xclip["directions"]] == [2]
    assert re.search(r"^xclip +set 2->1 +80\.00 +30\.00 +50\.00 +43\.64 +incomplete: trained on set 2 only, not averaged$", printed, re.M)
    assert re.search(r"^ +paper +89\.06 +48\.11 +40\.95 +62\.37$", printed, re.M)  # published beside it, no difference

    coupled, shared = by_name["coarse", "synta", "i3d_small (main_job_coupled)"], by_name["coarse", "synta", "i3d_small (main_job_shared)"]
    assert coupled["complete"] and shared["complete"] and coupled["paper"] is None
    assert coupled["average"]["unknown"] == pytest.approx(15.0) and coupled["interval"] is None  # no predictions, no interval
    # every published model of a block that has runs is listed; blocks without runs are not
    assert {r["model"] for r in records if (r["task"], r["dataset"]) == ("coarse", "synta")} >= {"c2d", "froster", "i3d_small"}
    assert {(r["task"], r["dataset"]) for r in records} == {("coarse", "synta"), ("fine", "k400ta")}
    assert "coarse task | Syn-TA" in printed and "fine task | K400-TA" in printed and "95 % CI" in printed

    assert json.loads((tmp_path / "t.json").read_text()) == json.loads(json.dumps(records))
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    x3d_rows = [r for r in rows if r["model"] == "x3d" and r["dataset"] == "synta"]
    assert [r["row"] for r in x3d_rows] == ["set1->2", "set2->1", "average", "paper", "ours-paper"]
    assert float(x3d_rows[2]["known_low"]) == pytest.approx(low, abs=1e-4) and x3d_rows[3]["source"].startswith("https://github.com/")
    assert [r["row"] for r in rows if r["model"] == "xclip" and r["dataset"] == "k400ta"] == ["set2->1", "paper"]


def test_table_refuses_what_it_cannot_tabulate(tmp_path):
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--table", str(tmp_path)])
    one_line_error(e, "no results.json under")
    write_run(tmp_path / "a", "x3d", "synta", "coarse", 1, 50.0, 20.0)
    write_run(tmp_path / "b" / "set1", "x3d", "synta", "coarse", 1, 50.0, 20.0)
    write_run(tmp_path / "b_set1", "x3d", "synta", "coarse", 1, 50.0, 20.0)  # the same run as b/set1: two set-1 runs
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--table", str(tmp_path)])
    one_line_error(e, "trained on set 1", "keep one run per set")
    (tmp_path / "b_set1" / "results.json").write_text('{"model": "x3d"')
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--table", str(tmp_path)])
    one_line_error(e, "b_set1", "not readable JSON", "--resume --out")
    for argv, words in ((["--plot", str(tmp_path / "p.png")], ["--table DIR"]), (["--table", str(tmp_path), "--plot", str(tmp_path / "p.jpg")], [".png"]),
                        (["--table", str(tmp_path), "--ckpt", "x.pt"], ["--ckpt", "finished runs"])):
        with pytest.raises(SystemExit) as e:
            evaluate.main(argv)
        one_line_error(e, *words)


def simulated_directions(rng, kinds: dict, n: int) -> list:
    """Two directions' predictions on shared val splits: `kinds[split]` gives the probability of each
    (right by the set-1 run, right by the set-2 run) pair of a video."""
    runs = [{"train_set": s, "predictions": {}} for s in (1, 2)]
    for split, p in kinds.items():
        pairs = rng.choice(4, size=n, p=[p[(1, 1)], p[(1, 0)], p[(0, 1)], p[(0, 0)]])
        for run, right in zip(runs, ((pairs <= 1), (pairs == 0) | (pairs == 2))):
            run["predictions"][split] = {"index": list(range(n)), "label": [0] * n, "pred": [0 if r else 1 for r in right]}
    return runs


def test_bootstrap_intervals_cover_the_true_rates_in_a_simulation():
    # one direction: a true top-1 of 70 % on 300 videos
    rng = np.random.default_rng(1)
    hits = 0
    for trial in range(300):
        run = {"train_set": 1, "predictions": {"val_set1": predictions(rng, 300, 0.7), "val_set2": predictions(rng, 300, 0.4)}}
        low, high = evaluate.bootstrap_intervals([run], resamples=400, seed=trial)["known"]
        hits += low <= 70 <= high
    assert 0.91 <= hits / 300 <= 0.99, hits
    # two directions scored on the same videos, their errors correlated: D_abs and HM of the average.
    # Resampling each direction's videos on its own would ignore the correlation (coverage near 100 %).
    kinds = {"val_set1": {(1, 1): 0.40, (1, 0): 0.30, (0, 1): 0.0, (0, 0): 0.30},  # set-1 run Known 70, set-2 run Unknown 40
             "val_set2": {(1, 1): 0.35, (1, 0): 0.0, (0, 1): 0.40, (0, 0): 0.25}}  # set-1 run Unknown 35, set-2 run Known 75
    truth = {"known": 72.5, "unknown": 37.5, "d_abs": 35.0, "hm": (evaluate.harmonic_mean(70, 35) + evaluate.harmonic_mean(75, 40)) / 2}
    hits = dict.fromkeys(truth, 0)
    for trial in range(300):
        interval = evaluate.bootstrap_intervals(simulated_directions(rng, kinds, 300), resamples=400, seed=trial)
        for k, value in truth.items():
            hits[k] += interval[k][0] <= value <= interval[k][1]
    assert all(0.91 <= h / 300 <= 0.98 for h in hits.values()), hits


def test_runs_store_their_predictions_and_intervals(synta_tiny, monkeypatch):
    from models import load_recipe

    videos_root, splits = synta_tiny

    def predict(model, loader, *args, **kwargs):  # every third video right, video 1 failed to decode; nothing decoded
        labels = torch.tensor(loader.dataset.labels)
        probs = torch.nn.functional.one_hot((labels + (torch.arange(len(labels)) % 3 > 0)) % 20, 20).float()
        return probs, labels, torch.arange(len(labels)) == 1

    monkeypatch.setattr(evaluate, "predict", predict)
    cfg = {**load_recipe("i3d_small", "synta", tiny=True), "dataset": "synta", "task": "coarse", "train_set": 2}
    val = evaluate.read_splits(splits, "synta", ["val_set1", "val_set2"])
    result = evaluate.evaluate_direction(torch.nn.Identity(), cfg, val, videos_root, torch.device("cpu"))
    for split, part in (("val_set2", "known"), ("val_set1", "unknown")):
        p, n = result["predictions"][split], len(val[split])
        assert p["index"] == [0, *range(2, n)] and p["label"] == [v.coarse_id for i, v in enumerate(val[split]) if i != 1]
        assert [a == b for a, b in zip(p["label"], p["pred"])] == [i % 3 == 0 for i in p["index"]]
        assert result[part]["top1"] == pytest.approx(100 * len(range(0, n, 3)) / (n - 1))
        low, high = result["bootstrap"][part]
        assert low < result["top1"][part] < high
    text = evaluate.results_json(result)
    assert json.loads(text) == json.loads(json.dumps(result)) and len(text.splitlines()) < 80  # a list is one line


def test_plot_is_written_and_opens_as_a_png(tmp_path, monkeypatch):
    import matplotlib.image

    rng = np.random.default_rng(2)
    for s in (1, 2):
        write_run(tmp_path / "runs" / f"x3d_synta_coarse_set{s}", "x3d", "synta", "coarse", s, 85.0, 50.0, rng)
    write_run(tmp_path / "runs" / "x3d_k400ta_coarse_set1", "x3d", "k400ta", "coarse", 1, 70.0, 45.0)
    evaluate.main(["--table", str(tmp_path / "runs"), "--plot", str(tmp_path / "plot.png")])
    image = matplotlib.image.imread(tmp_path / "plot.png")
    assert image.ndim == 3 and image.shape[1] > 1.5 * image.shape[0]  # two panels side by side
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit) as e:
        evaluate.plot_known_unknown([{"label": "a", "group": "g", "known": 50, "unknown": 20}], tmp_path / "x.png")
    one_line_error(e, "matplotlib", "pip install")


def readme_table(text: str, first_cell: str) -> list:
    lines = text[text.index(f"| {first_cell} |"):].split("\n\n")[0].splitlines()[2:]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_published_numbers_match_the_readme_and_the_official_conventions():
    with open(REPO / "docs" / "published_results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    readme = (REPO / "README.md").read_text()
    for table, first_cell in (("coarse", "Coarse"), ("fine", "Fine (base-to-novel)")):
        expected = []
        for model in dict.fromkeys(r["model"] for r in rows if r["table"] == table):
            mine = {r["dataset"]: r for r in rows if (r["table"], r["model"]) == (table, model)}
            expected.append([f"{mine['synta']['name']} (`{model}`)"] + [" / ".join(mine[d][k] for k in evaluate.COLUMNS)
                                                                         for d in ("synta", "k400ta", "ssv2ta")])
        assert readme_table(readme, first_cell) == expected, f"README's {table} table differs from docs/published_results.csv"
    assert len(rows) == 13 * 3 + 5 * 3 and {r["source"] for r in rows} == {"https://github.com/raiyaan-abdullah/Motion-Transfer#readme"}
    for r in rows:  # columns are means over the directions: D_abs = K - U, HM (mean of per-direction HMs) <= HM of the means
        k, u, d_abs, hm = (float(r[c]) for c in evaluate.COLUMNS)
        assert abs(d_abs - (k - u)) <= 0.011 and hm <= evaluate.harmonic_mean(k, u) + 0.01, r


def test_grid_prints_one_torchrun_line_per_run_left(tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["--model", "i3d_small,xclip", "--data", "synta", "--train-set", "both", "--task", "both", "--tiny", "--out", str(out)]
    train.main(argv + ["--print-commands", "4", "--set", "train.seed=3"])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 6 and "i3d_small is a classifier: the coarse task only" in captured.err
    assert lines[0] == (f"torchrun --standalone --nproc_per_node 4 train.py --model i3d_small --data synta --task coarse --train-set 1 "
                        f"--tiny --set train.seed=3 --out {out}/i3d_small_synta_coarse_set1")
    # an interrupted run continues, a finished one is left out
    for name, finished in (("i3d_small_synta_coarse_set1", True), ("i3d_small_synta_coarse_set2", False)):
        run_argv = ["--model", "i3d_small", "--data", "synta", "--train-set", name[-1], "--tiny", "--set", "train.seed=3"]
        (out / name).mkdir(parents=True)
        torch.save({"config": train.make_config(train.parse_args(run_argv)), "model": {}}, out / name / "ckpt.pt")
        if finished:
            write_run(out / name, "i3d_small", "synta", "coarse", 1, 50.0, 20.0)
    train.main(argv + ["--print-commands", "--set", "train.seed=3", "--workers", "0"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and not any("coarse_set1" in line and "i3d_small" in line for line in lines)
    assert lines[0] == f"torchrun --standalone --nproc_per_node 1 train.py --resume --out {out}/i3d_small_synta_coarse_set2 --workers 0"
    # a run made with other settings is neither resumed nor counted as finished
    with pytest.raises(SystemExit) as e:
        train.main(argv + ["--print-commands", "--set", "train.seed=4"])
    one_line_error(e, "i3d_small_synta_coarse_set1", "train.seed=3", "asks for 4")
    for extra, words in ((["--task", "fine"], ["fine task needs a text model"]), (["--resume"], ["leave out --resume"])):
        with pytest.raises(SystemExit) as e:
            train.main(argv + extra)
        one_line_error(e, *words)


def test_grid_runs_one_after_another_and_skips_finished_runs(tmp_path, monkeypatch, capsys):
    started = []

    def fake_run(args):  # the real run() is exercised by the main job's test, which goes through the same launcher
        started.append((args.model, args.train_set, bool(args.resume)))
        return write_run(Path(args.out), args.model, args.data, args.task, args.train_set, 60.0, 30.0)

    monkeypatch.setattr(train, "run", fake_run)
    argv = ["--model", "i3d_small", "--data", "synta", "--train-set", "both", "--tiny", "--out", str(tmp_path)]
    first = train.main(argv)
    assert started == [("i3d_small", 1, False), ("i3d_small", 2, False)]
    assert "average of the two directions" in capsys.readouterr().out
    second = train.main(argv)
    assert len(started) == 2 and [r["top1"] for r in second] == [r["top1"] for r in first]


def test_table_of_several_folders_names_runs_from_their_common_parent(tmp_path, capsys):
    runs = tmp_path / "runs"
    for appearance in ("coupled", "shared"):
        for s in (1, 2):
            write_run(runs / f"main_job_{appearance}" / f"set{s}", "i3d_small", "synta", "coarse", s, 40.0 + s, 10.0 * s)
    write_run(runs / "other" / "x3d_synta_coarse_set1", "x3d", "synta", "coarse", 1, 90.0, 50.0)  # not asked for
    records = evaluate.main(["--table", str(runs / "main_job_coupled"), str(runs / "main_job_shared")])
    ours = sorted(evaluate.record_name(r) for r in records if r["directions"])
    assert ours == ["i3d_small (main_job_coupled)", "i3d_small (main_job_shared)"]
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--table", str(runs / "main_job_coupled"), str(tmp_path / "absent")])
    one_line_error(e, "absent: not a folder")
