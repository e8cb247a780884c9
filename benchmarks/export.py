"""The exported SavedModel against the project's own generation, and ids vs strings at its border.

Run `python -m benchmarks.export [--quick]`. On the benchmark corpus (the ABC headlines sample
beside the repo, else the built-in corpus) a BPE tokenizer (vocab 10k) is fitted on the training
split. Then:
- per family, in its own process: a model at its default size (untrained: a step costs the same)
  saved as training saves it, exported by `python -m evaluation.export`, loaded back with
  tf.saved_model.load; one prompt, greedy and top-p, ms per decoding step of the exported
  `generate` signature against evaluation.generation (XLA as it picks by default, and without),
  in one run, as a ratio; greedy ids must be equal;
- the tokenizer in the graph instead (strings in and out): keras-hub's BytePairTokenizer from the
  same vocabulary and merges, inside a tf.function, against the `tokenizers` library: ms per
  prompt, how many held-out documents get identical ids, and whether a SavedModel holding it
  loads in a process that imports only TensorFlow.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks.common import (MEASURED_DEFAULTS, benchmark_data_file, load_average, parse_args, peak_rss_mb,
                               report, run_worker, served_as_worker, write_results)
from model_architectures.registry import family_names

NAME = "export"
VOCAB, MAX_LEN = 10_000, 256
PROMPT = "police say"
FULL = {"families": family_names(), "new_tokens": 100, "repeats": 3, "documents": 2000}
QUICK = {"families": ("gru", "transformer"), "new_tokens": 8, "repeats": 1, "documents": 50}
TOP_P = {"temperature": 0.8, "top_p": 0.9}


def saved_like_training(family: str, tokenizer_path: str, folder: Path) -> Path:
    """`<family>.keras` and the manifest keys evaluation.export reads, as the trainer writes them."""
    import keras

    from data_pipeline.tokenizer import TextTokenizer
    from model_architectures.registry import build_model

    tokenizer = TextTokenizer.load(tokenizer_path)
    keras.utils.set_random_seed(0)
    objective = "last_token" if family == "bilstm" else "causal"
    model = build_model(family, None, tokenizer.vocab_size, MAX_LEN)
    path = folder / f"{family}.keras"
    model.save(path)
    manifest = {"family": family, "vocab_size": tokenizer.vocab_size, "tokenizer_path": tokenizer_path,
                "tokenizer_fingerprint": tokenizer.fingerprint,
                "config": {"max_len": MAX_LEN, "objective": objective, "cleaning": "none"}}
    path.with_name(f"{family}.manifest.json").write_text(json.dumps(manifest))
    return path


def family_worker(arguments: dict[str, Any]) -> dict[str, Any]:
    """Export one family's model and time both ways of generating from it."""
    import tensorflow as tf

    from data_pipeline.tokenizer import TextTokenizer
    from evaluation.export import main as export_main
    from evaluation.generation import generate_timed
    from model_architectures.saving import load_trained_model

    family, settings = arguments["family"], QUICK if arguments["quick"] else FULL
    new_tokens, repeats = settings["new_tokens"], settings["repeats"]
    folder = Path(arguments["folder"])
    model_path = saved_like_training(family, arguments["tokenizer"], folder)
    started = time.perf_counter()
    assert export_main(["--model", str(model_path), "--out", str(folder / f"exported-{family}")]) == 0
    export_seconds = time.perf_counter() - started
    generate = tf.saved_model.load(str(folder / f"exported-{family}")).signatures["generate"]
    model = load_trained_model(model_path)
    tokenizer = TextTokenizer.load(arguments["tokenizer"])
    prompt_ids = tokenizer.encode(PROMPT)

    def exported(temperature: float = 0.0, top_p: float = 1.0) -> list[int]:
        answer = generate(prompt_ids=tf.constant([prompt_ids], tf.int32),
                          max_new_tokens=tf.constant(new_tokens), temperature=tf.constant(temperature),
                          top_k=tf.constant(0), top_p=tf.constant(top_p), seed=tf.constant(0))
        return answer["token_ids"].numpy()[0, : int(answer["lengths"].numpy()[0])].tolist()

    def exported_ms(**sampling: float) -> tuple[float, list[int]]:
        exported(**sampling)  # the first call runs the traced graph's one-off set-up
        timings, row = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            row = exported(**sampling)
            seconds = time.perf_counter() - started
            new = len(row) - len(prompt_ids)
            steps = new + (1 if new < new_tokens else 0)  # the step that sampled [EOS] counts too
            timings.append(1000 * seconds / max(steps, 1))
        return statistics.median(timings), row

    def project_ms(sampler: str, jit_compile: bool | None, **sampling: float) -> tuple[float, list[int]]:
        runs = [generate_timed(model, tokenizer, [PROMPT], new_tokens, sampler=sampler, seed=0,
                               jit_compile=jit_compile, **sampling) for _ in range(repeats)]
        return statistics.median(run.ms_per_token for run in runs), runs[-1].token_ids[0]

    greedy_ms, greedy_ids = exported_ms()
    project_greedy_ms, project_ids = project_ms("greedy", None)
    project_greedy_graph_ms, _ = project_ms("greedy", False)
    top_p_ms, _ = exported_ms(**TOP_P)
    project_top_p_ms, _ = project_ms("top_p", None, **TOP_P)
    return {
        "family": family, "parameters": model.count_params(), "export_seconds": round(export_seconds, 1),
        "new_tokens": len(greedy_ids) - len(prompt_ids), "greedy_ids_equal": greedy_ids == project_ids,
        "exported_greedy_ms": round(greedy_ms, 3), "project_greedy_ms": round(project_greedy_ms, 3),
        "project_greedy_no_xla_ms": round(project_greedy_graph_ms, 3),
        "exported_over_project_greedy": round(greedy_ms / project_greedy_ms, 2),
        "exported_top_p_ms": round(top_p_ms, 3), "project_top_p_ms": round(project_top_p_ms, 3),
        "exported_over_project_top_p": round(top_p_ms / project_top_p_ms, 2),
        "peak_rss_mb": round(peak_rss_mb()), "load_average": load_average(),
    }


def tokenizer_in_graph(tokenizer: Any, documents: Sequence[str], folder: Path) -> dict[str, Any]:
    """keras-hub's BytePairTokenizer (TensorFlow ops) against the project's `tokenizers` BPE."""
    import keras_hub
    import tensorflow as tf

    content = json.loads(tokenizer.to_json())["model"]
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in content["merges"]]
    in_graph = keras_hub.tokenizers.BytePairTokenizer(
        vocabulary=content["vocab"], merges=merges, unsplittable_tokens=list(tokenizer.special_tokens))
    encode = tf.function(lambda texts: in_graph.tokenize(texts),
                         input_signature=[tf.TensorSpec([None], tf.string)])
    graph_ids = [list(map(int, row)) for row in encode(tf.constant(list(documents))).to_list()]
    equal = sum(a == b for a, b in zip(graph_ids, tokenizer.encode_batch(documents)))

    def per_prompt_ms(run) -> float:
        started = time.perf_counter()
        for text in documents:
            run(text)
        return 1000 * (time.perf_counter() - started) / len(documents)

    graph_ms = per_prompt_ms(lambda text: encode(tf.constant([text])).to_list())
    library_ms = per_prompt_ms(lambda text: tokenizer.encode_batch([text]))

    module = tf.Module()
    module.tokenizer = in_graph
    module.encode = encode
    tf.saved_model.save(module, str(folder / "in-graph-tokenizer"))
    loading = subprocess.run(
        [sys.executable, "-c", "import sys, tensorflow as tf; tf.saved_model.load(sys.argv[1])",
         str(folder / "in-graph-tokenizer")], capture_output=True, text=True, timeout=300)
    error = [line for line in loading.stderr.splitlines() if "Error" in line][-1:] or [""]
    return {"documents": len(documents), "identical_ids": equal,
            "in_graph_ms_per_prompt": round(graph_ms, 3), "tokenizers_ms_per_prompt": round(library_ms, 4),
            "in_graph_over_tokenizers": round(graph_ms / library_ms),
            "loads_with_tensorflow_only": loading.returncode == 0, "load_error": error[0][:300]}


def main(argv: Sequence[str] | None = None) -> None:
    if served_as_worker(argv, family_worker):
        return
    args = parse_args(__doc__.splitlines()[0], argv)
    settings = QUICK if args.quick else FULL
    started = time.perf_counter()

    from data_pipeline.config import ExperimentConfig
    from data_pipeline.corpus import load_corpus
    from data_pipeline.tokenizer import fit_or_load_tokenizer

    corpus_name, data_file = benchmark_data_file()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
        folder = Path(scratch)
        config = ExperimentConfig.from_dict({**MEASURED_DEFAULTS, "data_file": data_file, "vocab_size": VOCAB,
                                             "tokenizer_path": str(folder / "tokenizer.json")})
        corpus = load_corpus(config)
        tokenizer = fit_or_load_tokenizer(corpus.train, config)
        strings = tokenizer_in_graph(tokenizer, corpus.test[: settings["documents"]], folder)
        print(strings, flush=True)
        rows = []
        for family in settings["families"]:
            rows.append(run_worker(NAME, {"family": family, "quick": args.quick,
                                          "tokenizer": str(folder / "tokenizer.json"),
                                          "folder": scratch}))
            print(rows[-1], flush=True)
    path = write_results(NAME, {"corpus": corpus_name, "vocab_size": tokenizer.vocab_size,
                                "max_len": MAX_LEN, "prompt": PROMPT, "top_p_sampling": TOP_P,
                                "tokenizer_in_graph": strings, "rows": rows}, args.quick, started)
    report(NAME, rows, path, [f"tokenizer in the graph: {strings}"])


if __name__ == "__main__":
    main(sys.argv[1:])
