"""Training-side sections of scripts/bench.py: storage (bytes per frame and accuracy per feature dtype) and
training_step (a small LSTM fed by the reader vs by story 000's generator)."""

from __future__ import annotations

import tempfile
import time

import numpy as np

from bench_data import default_dtype, pick, sequence_data, story000_generator


def bench_storage(size: str) -> dict:
    """Bytes per frame feature for each --feature_dtype, and what the compact dtype does to LSTM accuracy.

    One set of sample videos (the harder --noclass_colours variant, so accuracy is not saturated) is extracted
    once per dtype. Two accuracy changes are reported: `eval_change_points`, the float32-trained model evaluated
    on the test split stored in each dtype (the storage effect alone), and `retrained_change_points`, the mean
    test accuracy of LSTMs trained and tested on each dtype over the same seeds (storage plus the training
    noise it perturbs). Bytes and accuracies do not depend on process boundaries, so extraction and training
    run in this process, through the libraries the commands call (one model build for the three extractions).
    """
    import keras
    import numpy as np

    from dataformat import schema
    from dataformat.schema import read_splits
    from pipeline.job import ExtractConfig, run_extraction
    from tools.samples import SESSION_GROUP_REGEX, write_samples
    from training.input_pipeline import InputConfig, make_dataset
    from training.models import ModelConfig
    from training.train import TrainConfig, train_and_evaluate

    work = tempfile.mkdtemp(prefix="bench-storage-")
    (sessions, clips), seeds, epochs = pick(size, ((3, 1), [0], 2), ((5, 3), [0], 6), ((8, 6), [0, 1, 2], 15))
    write_samples(f"{work}/videos", seed=0, sessions=sessions, clips=clips, seconds=2, class_colours=False)
    results: dict = {"dtypes": {}}
    for dtype in schema.FEATURE_DTYPES:
        data = f"{work}/{dtype}"
        frames = run_extraction(ExtractConfig(output_dir=data, input_dir=f"{work}/videos", weights="none",
                                              image_size=75, fps=2, feature_dtype=dtype,
                                              group_regex=SESSION_GROUP_REGEX))["frames"]
        info = list(read_splits(data, schema.SEQUENCES).values())
        accuracies = []
        # Retraining on float16 (storage plus training noise) is measured in full mode only; every mode measures
        # the storage effect alone (the float32 model evaluated on both).
        for seed in seeds if dtype == "float32" or size == "full" else []:
            config = TrainConfig(data_dir=data, model="lstm", epochs=epochs, seed=seed,
                                 arch=ModelConfig(lstm_units=64, dense_units=32))
            accuracies.append(train_and_evaluate(config, f"{data}/run{seed}")["test_accuracy"])
        results["dtypes"][dtype] = {
            "feature_bytes_per_frame": 2048 * np.dtype(dtype).itemsize,
            "shard_bytes_per_frame": round(sum(i.num_bytes for i in info) / frames, 1),
            "test_accuracy_per_seed": accuracies,
            "test_accuracy_mean": round(float(np.mean(accuracies)), 4) if accuracies else None,
        }
    model = keras.models.load_model(f"{work}/float32/run{seeds[0]}/best.keras", safe_mode=True)
    probabilities, labels = {}, {}
    for dtype in schema.FEATURE_DTYPES:  # shuffle=False: both splits in the same (content-keyed) order
        batches = list(make_dataset(f"{work}/{dtype}", "test", InputConfig(kind="sequences", shuffle=False, inputs_dtype="float32"))
                       .as_numpy_iterator())
        probabilities[dtype] = np.concatenate([np.asarray(model.predict_on_batch(x)) for x, _ in batches])
        labels[dtype] = np.concatenate([y for _, y in batches])
    assert all(np.array_equal(labels[d], labels["float32"]) for d in labels)
    predicted = {d: np.argmax(p, axis=-1) for d, p in probabilities.items()}
    accuracy = {d: float(np.mean(p == labels[d])) for d, p in predicted.items()}
    results["test_examples"] = len(labels["float32"])
    results["seeds"] = seeds
    results["eval_test_accuracy"] = accuracy
    results["ratios"] = {}
    for dtype in ("float16", "uint8"):  # each compact dtype against float32
        results[f"eval_change_points_{dtype}"] = round(100 * (accuracy[dtype] - accuracy["float32"]), 2)
        results[f"eval_prediction_agreement_{dtype}"] = float(np.mean(predicted[dtype] == predicted["float32"]))
        results[f"eval_max_probability_change_{dtype}"] = float(np.max(np.abs(probabilities[dtype]
                                                                               - probabilities["float32"])))
        means = [results["dtypes"][d]["test_accuracy_mean"] for d in (dtype, "float32")]
        results[f"retrained_change_points_{dtype}"] = (round(100 * (means[0] - means[1]), 2) if None not in means
                                                       else None)
        results["ratios"][f"storage_{dtype}_vs_float32"] = round(
            results["dtypes"][dtype]["shard_bytes_per_frame"] / results["dtypes"]["float32"]["shard_bytes_per_frame"], 3)
    return results


def bench_training_step(size: str) -> dict:
    """Steps/s of one small LSTM fed by the project's reader vs by story 000's generator (same data, batch 32)."""
    import keras

    from dataformat.schema import split_info
    from training.input_pipeline import InputConfig, make_dataset

    data_dirs, npy = sequence_data(size)
    data_dir = data_dirs[default_dtype()]
    labels = np.arange(len(npy)) % 2
    steps = pick(size, 2, 12, 30)

    def model(dtype="float32"):  # the project's model takes the stored dtype and casts in its first layer
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((100, 2048), dtype=dtype), keras.layers.LSTM(32), keras.layers.Dense(2)])
        m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m

    def steps_per_s(batches, dtype="float32") -> float:
        m = model(dtype)
        m.fit(batches, steps_per_epoch=2, epochs=1, verbose=0)  # trace and warm up
        start = time.perf_counter()
        m.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
        return steps / (time.perf_counter() - start)

    generator = steps_per_s(story000_generator(npy, labels, 32))
    ds = make_dataset(data_dir, "train", InputConfig(kind="sequences", batch_size=32, seq_len=100),
                      num_epochs=1000).repeat()
    project = steps_per_s(ds, default_dtype())
    return {"model": "LSTM(32) -> Dense(2) over (100, 2048)", "batch_size": 32, "steps_timed": steps,
            "feature_dtype": split_info(data_dir, "sequences", "train").spec.feature_dtype,
            "seed_generator_steps_per_s": round(generator, 2), "project_steps_per_s": round(project, 2),
            "ratios": {"training_step_vs_seed_generator": round(project / generator, 2)}}
