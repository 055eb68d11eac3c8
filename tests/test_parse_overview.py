"""scripts/parse_results.py on a whole output folder: one table per protocol, methods as rows, datasets as columns."""
import os

from scripts.parse_results import main


def write_log(folder, acc, train):
    os.makedirs(folder, exist_ok=True)
    end = "Finish training" if train else "=> result"
    with open(os.path.join(folder, "log.txt"), "w") as f:
        f.write(f"epoch [1/1] batch [1/1] loss 1.0\n{end}\n* total: 100\n* accuracy: {acc}%\n")


def b2n(root, dataset, trainer, cfg, seed, base, new, shots=16):
    rel = os.path.join(dataset, f"shots_{shots}", trainer, cfg, f"seed{seed}")
    write_log(os.path.join(root, "base2new", "train_base", rel), base, train=True)
    if new is not None:
        write_log(os.path.join(root, "base2new", "test_new", rel), new, train=False)


def test_whole_output_folder_gives_one_row_per_method(tmp_path, capsys):
    root = str(tmp_path / "output")
    for seed, (b, n) in enumerate([(70, 60), (80, 70), (75, 65)]):
        b2n(root, "toyshapes", "CoOp", "toyshapes", seed, b, n)
        b2n(root, "toyshapes", "FDBPL", "toyshapes", seed, b + 2, n + 10)
    b2n(root, "dtd", "CoOp", "toyshapes", 0, 50, None)  # a second dataset, no new-class result yet
    write_log(os.path.join(root, "evaluation", "CoOp", "toyshapes_16shots", "toyshapes", "seed0"), 42.5, train=False)

    assert main([root]) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(line for line in out if line.startswith("method"))
    assert "toyshapes: base / new / HM" in header and "dtd: base / new / HM" in header and "average" in header
    coop = next(line for line in out if line.startswith("CoOp "))
    fdbpl = next(line for line in out if line.startswith("FDBPL "))
    # CoOp on toyshapes: base 75, new 65, HM 2*75*65/140 = 69.64; on dtd base 50, no new -> '-'
    assert "75.00 / 65.00 / 69.64" in coop and "50.00 / - / -" in coop
    assert "77.00 / 75.00 / 75.99" in fdbpl
    assert any(line.startswith("Evaluations") for line in out)
    assert any(line.startswith("CoOp") and "42.50" in line for line in out[out.index(next(
        line for line in out if line.startswith("Evaluations"))):])
    # the base2new folder itself works too, and several shot counts are labelled
    b2n(root, "toyshapes", "CoOp", "toyshapes", 0, 10, 10, shots=2)
    assert main([os.path.join(root, "base2new")]) == 0
    rows = capsys.readouterr().out
    assert "CoOp/toyshapes/2 shots" in rows and "CoOp/toyshapes/16 shots" in rows


def test_folders_without_results_say_what_is_missing(tmp_path, capsys):
    empty = str(tmp_path / "output")
    os.makedirs(os.path.join(empty, "base2new", "train_base"))
    assert main([empty]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no results under") and "base2new/train_base/<dataset>" in err
    for flag, first_target in (("--xd", "caltech101"), ("--dg", "imagenetv2")):
        assert main([empty, flag]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: no evaluation/<trainer>/<cfg>_16shots/<dataset>/seed*/log.txt for " + first_target)
        assert err.rstrip().endswith("under " + empty)


def promptkd(root, dataset, seed, base, new, cfg="toyshapes", trainer="PromptKD"):
    """A PromptKD run as scripts/promptkd/*.sh writes it: train_all_transductive/ + test_base/ + test_new/."""
    rel = os.path.join(dataset, trainer, cfg, f"seed{seed}")
    write_log(os.path.join(root, "base2new", "train_all_transductive", rel), 99.0, train=True)  # all classes: unused
    if base is not None:
        write_log(os.path.join(root, "base2new", "test_base", rel), base, train=False)
    if new is not None:
        write_log(os.path.join(root, "base2new", "test_new", rel), new, train=False)


def test_promptkd_runs_are_reported_and_marked_transductive(tmp_path, capsys):
    root = str(tmp_path / "output")
    for seed, (b, n) in enumerate([(70, 60), (80, 70)]):
        b2n(root, "toyshapes", "CoOp", "toyshapes", seed, b, n)
        promptkd(root, "toyshapes", seed, b + 10, n + 10)  # base 85, new 75
    promptkd(root, "toyshapes", 0, 50, 40, cfg="other")  # a second config: labelled with it
    promptkd(root, "dtd", 0, 60, None)  # evaluated on base only so far

    assert main([root]) == 0
    out = capsys.readouterr().out.splitlines()
    pkd = next(line for line in out if line.startswith("PromptKD/toyshapes [transductive]"))
    # toyshapes: base 85, new 75, HM 2*85*75/160 = 79.69 (the training log's 99 % over all classes is not used)
    assert "85.00 / 75.00 / 79.69" in pkd and "99.00" not in pkd
    other = next(line for line in out if line.startswith("PromptKD/other [transductive]"))
    assert "50.00 / 40.00 / 44.44" in other
    coop = next(line for line in out if line.startswith("CoOp "))
    assert "75.00 / 65.00 / 69.64" in coop and "[transductive]" not in coop
    assert any(line.startswith("[transductive]: trained on the unlabelled images") for line in out)

    # --base2new: one row per (dataset, trainer, config), the trainer marked; a run with no new result has '-'
    assert main([os.path.join(root, "base2new"), "--base2new"]) == 0
    rows = capsys.readouterr().out.splitlines()
    toy = next(line for line in rows if line.startswith("toyshapes") and "PromptKD [transductive]" in line
               and " toyshapes " in line)
    assert "85.00 +- 5.00" in toy and "75.00 +- 5.00" in toy and "79.69" in toy and toy.rstrip().endswith("2")
    dtd = next(line for line in rows if line.startswith("dtd") and "PromptKD" in line)
    assert "60.00 +- 0.00" in dtd and dtd.split()[-2:] == ["-", "1"] and " - " in dtd
    assert any(line.startswith("[transductive]:") for line in rows)


def test_a_promptkd_only_tree_is_an_output_root(tmp_path, capsys):
    root = str(tmp_path / "t16")
    promptkd(root, "toyshapes", 0, 80, 70)
    assert main([root]) == 0
    assert "PromptKD [transductive]" in capsys.readouterr().out
    # the base2new folder itself, which has no train_base/, is recognised too
    assert main([os.path.join(root, "base2new")]) == 0
    assert "80.00 / 70.00 / 74.67" in capsys.readouterr().out
