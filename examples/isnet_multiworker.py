"""ISNet training with tf.distribute.MultiWorkerMirroredStrategy: two workers on one machine.

Run:
    python examples/isnet_multiworker.py
        launches two worker processes on 127.0.0.1 (ports chosen free at run time), waits for
        them (120 s at most) and checks that they end with the same weights, equal to those of
        the same training on one device;
    python examples/isnet_multiworker.py --worker 0 --ports 23456,23457 --out w0.npz
        runs one worker (what the launcher does twice); start the other with --worker 1.

Every worker builds the same data and model. Each global batch of 16 samples is split in two:
worker i trains on its 8 samples, ``ISNet.train_step`` scales the loss by the number of
replicas in sync, the optimizer sums the gradients across the workers, and every worker
applies the same update: the step of the global batch on one device. The cluster uses
loopback addresses (127.0.0.1) only.

Note: Keras 3's ``Model.fit`` fails under MultiWorkerMirroredStrategy with "Attempt to
convert a value (PerReplica...)" (keras-team/keras#20585, also for plain Keras models), so
the workers run ``isnet.train_step`` in a small custom loop with ``strategy.run``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

GLOBAL_BATCH = 16
EPOCHS = 2


def free_loopback_ports(n: int) -> list[int]:
    """``n`` TCP ports that are free on 127.0.0.1 now."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
    )


def toy_data(n: int = 64, seed: int = 0):
    """Labels encoded by a foreground pattern and by a bright background mark."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.uniform(0.0, 0.3, size=(n, 8, 8)).astype("float32")
    for i, label in enumerate(y):
        x[i, 2 + label, 2:6] += 0.6  # a horizontal bar in the foreground
        x[i, 0:2, 2 * label : 2 * label + 2] = 1.0  # the background shortcut
    masks = np.zeros((n, 8, 8), dtype="float32")
    masks[:, 2:6, 2:6] = 1
    return np.clip(x, 0, 1)[..., None], y, masks


def make_classifier(keras):
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )


def run_worker(index: int, ports: list[int], out: str) -> None:
    os.environ["TF_CONFIG"] = tf_config(ports, index)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    # The strategy must exist before any other TensorFlow op runs.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras
    import numpy as np

    import keras_isnet as ki

    workers = strategy.num_replicas_in_sync
    per_worker = GLOBAL_BATCH // workers
    x, y, masks = toy_data()
    steps = len(x) // GLOBAL_BATCH

    def dataset_fn(context):
        # This worker's share of every global batch, in order.
        i = context.input_pipeline_id
        rows = np.arange(steps * GLOBAL_BATCH).reshape(steps, workers, per_worker)[:, i]
        rows = rows.reshape(-1)
        return ki.isnet_dataset(x[rows], y[rows], masks[rows], batch_size=per_worker, shuffle=False)

    keras.utils.set_random_seed(0)  # the same initial weights on every worker
    with strategy.scope():
        model = make_classifier(keras)
        isnet = ki.ISNet(model, variant="selective", P=0.7)
        isnet.compile(optimizer=keras.optimizers.SGD(0.05))
        isnet.optimizer.build(isnet.trainable_variables)
    initial = [v.numpy() for v in model.weights]

    @tf.function
    def train_step(iterator):
        logs = strategy.run(isnet.train_step, args=(next(iterator),))
        return {k: strategy.reduce("MEAN", v, axis=None) for k, v in logs.items()}

    batches = strategy.distribute_datasets_from_function(dataset_fn)
    for epoch in range(EPOCHS):
        isnet.reset_metrics()
        iterator = iter(batches)
        for _ in range(steps):
            logs = train_step(iterator)
        print(
            f"worker {index} epoch {epoch}: " + json.dumps({k: float(v) for k, v in logs.items()})
        )

    # The same training on one device, global batches of 16, as a reference.
    reference = make_classifier(keras)
    reference.set_weights(initial)
    single = ki.ISNet(reference, variant="selective", P=0.7)
    single.compile(optimizer=keras.optimizers.SGD(0.05))
    ds = ki.isnet_dataset(x, y, masks, batch_size=GLOBAL_BATCH, shuffle=False)
    single.fit(ds, epochs=EPOCHS, verbose=0)

    arrays = {f"w{i}": v.numpy() for i, v in enumerate(model.weights)}
    arrays.update({f"init_w{i}": w for i, w in enumerate(initial)})
    arrays.update({f"single_w{i}": v.numpy() for i, v in enumerate(reference.weights)})
    np.savez(out, **arrays)


def launch(timeout: float = 120.0) -> int:
    """Start both workers, wait for them, compare their final weights."""
    import numpy as np

    ports = free_loopback_ports(2)
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    with tempfile.TemporaryDirectory() as tmp:
        outs = [str(Path(tmp) / f"worker{i}.npz") for i in range(2)]
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", str(i), "--ports", ",".join(map(str, ports))]
                + ["--out", outs[i]],
                env=env,
            )
            for i in range(2)
        ]
        try:
            codes = [p.wait(timeout=timeout) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        if any(codes):
            print(f"a worker failed: exit codes {codes}")
            return 1
        a, b = (np.load(o) for o in outs)
        names = [k for k in a.files if k.startswith("w")]
        diff = max(float(np.abs(a[k] - b[k]).max()) for k in names)
        single = max(float(np.abs(a[k] - a["single_" + k]).max()) for k in names)
        moved = max(float(np.abs(a[k] - a["init_" + k]).max()) for k in names)
    print(
        f"largest weight difference: between the workers {diff:.3g}, to one-device training "
        f"{single:.3g} (training moved the weights by up to {moved:.3g})"
    )
    return 0 if diff <= 1e-6 and single <= 1e-5 else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=int, help="run worker INDEX (0 or 1)")
    parser.add_argument("--ports", help="the two workers' ports on 127.0.0.1, comma-separated")
    parser.add_argument("--out", help="where the worker writes its weights (.npz)")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    if args.worker is None:
        return launch(args.timeout)
    if not args.ports or not args.out:
        parser.error("--worker needs --ports and --out")
    run_worker(args.worker, [int(p) for p in args.ports.split(",")], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
