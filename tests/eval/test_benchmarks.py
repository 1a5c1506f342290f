"""Benchmark loading: built-ins, JSONL / JSON / Parquet files, column mapping by flag and by layout, and errors
that name the file and record. CPU, about a second.
"""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eksft.eval.benchmarks import LAYOUTS, load_benchmark


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_builtin_benchmark_is_deterministic_and_limited():
    a = load_benchmark("arithmetic-easy", limit=5)
    b = load_benchmark("arithmetic-easy", limit=5)
    assert a.problems == b.problems and len(a.problems) == 5
    assert {"id", "problem", "answer"} <= set(a.problems[0])


def test_jsonl_with_auto_detected_columns(tmp_path):
    rows = [{"question": "1+1?", "answer": "2"}, {"question": "half?", "answer": "\\frac12"}]
    f = write_jsonl(tmp_path / "q.jsonl", rows)
    bench = load_benchmark(str(f))
    assert bench.name == "q"
    assert [p["id"] for p in bench.problems] == ["0", "1"]
    assert bench.problems[1]["answer"] == "\\frac12"


def test_column_flags(tmp_path):
    f = write_jsonl(tmp_path / "q.jsonl", [{"q": "1+1?", "gold_answer": "2", "key": "x"}])
    bench = load_benchmark(str(f), problem_column="q", answer_column="gold_answer", id_column="key")
    assert bench.problems == [{"id": "x", "problem": "1+1?", "answer": "2"}]


def test_missing_column_names_file_line_and_fix(tmp_path):
    f = write_jsonl(tmp_path / "q.jsonl", [{"problem": "1+1?", "answer": "2"}, {"problem": "2+2?", "solution": "4"}])
    with pytest.raises(ValueError, match=r"q\.jsonl line 2: no answer column.*--answer-column"):
        load_benchmark(str(f))
    with pytest.raises(ValueError, match=r"line 1: no column 'nope'"):
        load_benchmark(str(f), answer_column="nope")


def test_unparsable_gold_names_the_record(tmp_path):
    f = write_jsonl(tmp_path / "q.jsonl", [{"problem": "a", "answer": "1"}, {"problem": "b", "answer": "???"}])
    with pytest.raises(ValueError, match=r"q\.jsonl line 2: gold answer '\?\?\?' does not parse"):
        load_benchmark(str(f))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layouts_read_parquet_with_the_public_column_names(tmp_path, layout):
    spec = LAYOUTS[layout]
    rows = [{spec["problem"]: "Find 6*7.", spec["answer"]: "42", spec["id"]: 7, "extra": "ignored"}]
    path = tmp_path / f"{layout}.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    bench = load_benchmark(f"{layout}:{path}")
    assert bench.problems == [{"id": "7", "problem": "Find 6*7.", "answer": "42"}]


def test_capitalised_aime_layout_and_json_file(tmp_path):
    f = tmp_path / "aime.json"
    f.write_text(json.dumps([{"ID": "2024-I-1", "Problem": "p", "Answer": 204}]))
    assert load_benchmark(str(f)).problems == [{"id": "2024-I-1", "problem": "p", "answer": "204"}]


def test_unknown_benchmark_lists_the_choices():
    with pytest.raises(ValueError, match="neither a built-in"):
        load_benchmark("no-such-benchmark")


def test_offset_takes_a_later_slice_with_the_ids_of_the_whole_set(tmp_path):
    """--offset (held-out problems for a confirmation run): the same problems and ids as the whole set's slice, so a
    problem's sampling seed does not depend on the slice; past the end is one clear error."""
    whole = load_benchmark("arithmetic-easy", limit=8).problems
    later = load_benchmark("arithmetic-easy", limit=3, offset=5).problems
    assert later == whole[5:8]
    assert [p["id"] for p in later] == ["arithmetic-easy/5", "arithmetic-easy/6", "arithmetic-easy/7"]
    f = write_jsonl(tmp_path / "q.jsonl", [{"question": f"{i}+1?", "answer": str(i + 1)} for i in range(4)])
    rows = load_benchmark(str(f), offset=2).problems
    assert [(p["id"], p["answer"]) for p in rows] == [("2", "3"), ("3", "4")]
    with pytest.raises(ValueError, match="offset 4: benchmark .* has 4 records"):
        load_benchmark(str(f), offset=4)
    with pytest.raises(ValueError, match="has 200 problems"):
        load_benchmark("arithmetic-easy", offset=200)


def test_every_eval_flag_reaches_the_config(monkeypatch):
    """Each field flag of `eksft eval` given a non-default value arrives in the EvalConfig (or its SamplingConfig)
    that is evaluated: a flag the command parses but never passes on is silently ignored otherwise."""
    import dataclasses

    from eksft import cli
    from eksft.commands.eval import FLAGS
    from eksft.eval import runner

    seen = []
    monkeypatch.setattr(runner, "evaluate", lambda cfg, **kw: seen.append(cfg))
    values = {"offset": "3", "limit": "5", "data_parallel": "2", "seed": "7", "verify_timeout": "9"}
    argv = ["eval", "m", "--benchmark", "arithmetic-easy", "--output-dir", "out"]
    for name, value in values.items():
        assert name in FLAGS
        argv += [f"--{name.replace('_', '-')}", value]
    assert cli.main(argv) == 0
    (cfg,) = seen
    got = {**dataclasses.asdict(cfg), **dataclasses.asdict(cfg.sampling)}
    assert {name: str(got[name]) for name in values} == values
