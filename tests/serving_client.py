"""A client of exported models as a serving machine runs it: TensorFlow, `tokenizers` and the
export's own files, nothing of this project.

    python -I -S serving_client.py SITE_PACKAGES REQUEST_JSON

-I -S: no PYTHONPATH, no working directory, no site hooks, so the project's editable install
(a .pth finder) is not active; SITE_PACKAGES is appended as a plain folder so the installed
libraries import. REQUEST_JSON: {"exports": [folders], "prompt_ids": [[...]], "runs": {name:
{max_new_tokens, temperature, top_k, top_p, seed}}, "bad_requests": {name: prompt_ids}}. Prints
one JSON object: per export and run the ids and texts (through the `generate` signature, as TF
Serving calls it), each bad request's error ("" if it was served), and the project packages that
were importable or imported (both must be empty).
"""

import importlib.util
import json
import sys

sys.path.append(sys.argv[1])

PROJECT_PACKAGES = ("data_pipeline", "model_architectures", "training_assets", "evaluation",
                    "benchmarks")
importable = [name for name in PROJECT_PACKAGES if importlib.util.find_spec(name) is not None]

import tensorflow as tf  # noqa: E402
import tokenizers  # noqa: E402


def decoder(export: str):
    """ids -> text from the export's tokenizer.json (either kind), skipping special ids."""
    with open(f"{export}/export.json", encoding="utf-8") as file:
        description = json.load(file)
    path = f"{export}/{description['tokenizer']}"
    if description["tokenizer_kind"] == "bpe":
        return tokenizers.Tokenizer.from_file(path).decode
    with open(path, encoding="utf-8") as file:
        content = json.load(file)  # {"special_tokens": [...], "characters": [...]}
    first = len(content["special_tokens"])
    return lambda ids: "".join(content["characters"][i - first] for i in ids if i >= first)


def call(generate, prompt_ids, settings):
    answer = generate(prompt_ids=tf.constant(prompt_ids, tf.int32),
                      max_new_tokens=tf.constant(settings["max_new_tokens"], tf.int32),
                      temperature=tf.constant(settings["temperature"], tf.float32),
                      top_k=tf.constant(settings["top_k"], tf.int32),
                      top_p=tf.constant(settings["top_p"], tf.float32),
                      seed=tf.constant(settings["seed"], tf.int32))
    return [row[:length] for row, length in zip(answer["token_ids"].numpy().tolist(),
                                                 answer["lengths"].numpy().tolist())]


def main() -> None:
    with open(sys.argv[2], encoding="utf-8") as file:
        request = json.load(file)
    results = {"importable": importable, "exports": {}}
    for export in request["exports"]:
        generate = tf.saved_model.load(export).signatures["generate"]
        decode = decoder(export)
        runs = {}
        for name, settings in request["runs"].items():
            rows = call(generate, request["prompt_ids"], settings)
            runs[name] = {"ids": rows, "texts": [decode(row) for row in rows]}
        for name, prompt_ids in request["bad_requests"].items():
            try:
                call(generate, prompt_ids, next(iter(request["runs"].values())))
                runs[name] = ""  # served: not an error for this model
            except tf.errors.InvalidArgumentError as error:
                runs[name] = error.message
        results["exports"][export] = runs
    results["imported"] = sorted(name for name in sys.modules
                                 if name.split(".")[0] in PROJECT_PACKAGES)
    print(json.dumps(results))


main()
