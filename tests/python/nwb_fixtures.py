"""NWB files for tests/nwb.rs, written by pynwb itself, and a reader that
checks exported files with pynwb and nwbinspector.

Usage: python3 nwb_fixtures.py KIND ARGS... ; prints one JSON object of the
values the Rust side must reproduce.
"""
import json
import sys
from datetime import datetime, timezone

import numpy as np
from pynwb import NWBHDF5IO, NWBFile, TimeSeries
from pynwb.behavior import Position, SpatialSeries
from pynwb.file import Subject

START = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
TRIAL_S = 1.0
SPLITS = ["train", "train", "train", "val", "test"]


def new_file(description):
    return NWBFile(
        session_description=description,
        identifier="alternator-test-" + description.replace(" ", "-"),
        session_start_time=START,
        subject=Subject(subject_id="sim", species="Macaca mulatta", sex="M", age="P5Y"),
    )


def units_session(h5_path, out, seed):
    """MC_Maze-like layout: Units (spike times jittered inside their bins,
    plus held-out units), processing/behavior/hand_vel and hand_pos, trials."""
    import h5py

    with h5py.File(h5_path, "r") as f:
        counts = f["spikes"][()].astype(int)
        beh = f["behavior"][()].astype(np.float64)
        bin_s = float(f.attrs["bin_seconds"])
    n_bins, n_units = counts.shape
    rng = np.random.default_rng(seed)
    nwb = new_file("simulated reach")
    nwb.add_unit_column(name="heldout", description="unit held out from decoding")
    end = n_bins * bin_s
    for c in range(n_units):
        k = np.repeat(np.arange(n_bins), counts[:, c])
        t = np.sort((k + rng.uniform(0.05, 0.95, size=k.size)) * bin_s)
        nwb.add_unit(spike_times=t, obs_intervals=[[0.0, end]], heldout=False)
    for _ in range(3):
        t = np.sort(rng.uniform(0.0, end, size=200))
        nwb.add_unit(spike_times=t, obs_intervals=[[0.0, end]], heldout=True)
    module = nwb.create_processing_module(name="behavior", description="hand kinematics")
    stamps = (np.arange(n_bins) + 0.5) * bin_s
    module.add(TimeSeries(name="hand_vel", data=beh, unit="m/s", timestamps=stamps, description="hand velocity"))
    module.add(TimeSeries(name="hand_pos", data=np.cumsum(beh, axis=0) * bin_s, unit="m", timestamps=stamps,
                          description="hand position"))
    nwb.add_trial_column(name="split", description="train/val/test assignment")
    n_trials = int(end // TRIAL_S)
    val_bins = 0
    for i in range(n_trials):
        split = SPLITS[i % len(SPLITS)]
        nwb.add_trial(start_time=i * TRIAL_S, stop_time=(i + 1) * TRIAL_S, split=split)
        if split == "val":
            val_bins += int(round(TRIAL_S / bin_s))
    with NWBHDF5IO(out, "w") as io:
        io.write(nwb)
    return {"bins": n_bins, "units": n_units + 3, "val_bins": val_bins, "trials": n_trials,
            "index_dtype": str(np.asarray(nwb.units["spike_times"].data).dtype)}


def tutorial_session(out, seed):
    """The pynwb tutorial layout: processing/behavior/Position/<SpatialSeries>
    with starting_time + rate, conversion and offset; a few units."""
    rng = np.random.default_rng(seed)
    bin_s, rate, n_bins = 0.02, 100.0, 250
    per_bin = int(round(bin_s * rate))
    raw = np.cumsum(rng.normal(size=(n_bins * per_bin, 2)), axis=0)
    conversion, offset = 0.001, 0.25
    nwb = new_file("tutorial layout")
    units = []
    for _ in range(4):
        t = np.sort(rng.uniform(0.0, n_bins * bin_s, size=300))
        nwb.add_unit(spike_times=t)
        units.append(np.histogram(t, bins=np.arange(n_bins + 1) * bin_s)[0].tolist())
    pos = Position(name="Position")
    # Samples at 5 ms + 10 ms * i: exactly two in each 20 ms bin.
    pos.create_spatial_series(name="SpatialSeries", data=raw, reference_frame="origin at the start",
                              starting_time=0.005, rate=rate, conversion=conversion, offset=offset, unit="meters")
    nwb.create_processing_module(name="behavior", description="position").add(pos)
    with NWBHDF5IO(out, "w") as io:
        io.write(nwb)
    expected = (raw.reshape(n_bins, per_bin, 2).mean(axis=1) * conversion + offset)
    return {"bins": n_bins, "behavior": expected.tolist(), "counts": np.array(units).T.tolist()}


def bad_files(out_dir):
    """One broken file per error the reader must name."""
    import h5py

    nwb = new_file("no units")
    m = nwb.create_processing_module(name="behavior", description="b")
    m.add(TimeSeries(name="hand_vel", data=np.zeros((10, 2)), unit="m/s", rate=50.0, starting_time=0.0))
    with NWBHDF5IO(f"{out_dir}/no-units.nwb", "w") as io:
        io.write(nwb)

    nwb = new_file("empty units")
    nwb.add_unit(spike_times=np.array([], dtype=float))
    nwb.add_unit(spike_times=np.array([], dtype=float))
    with NWBHDF5IO(f"{out_dir}/empty.nwb", "w") as io:
        io.write(nwb)

    nwb = new_file("bad index")
    nwb.add_unit(spike_times=[0.1, 0.2])
    nwb.add_unit(spike_times=[0.3, 0.4, 0.5])
    with NWBHDF5IO(f"{out_dir}/bad-index.nwb", "w") as io:
        io.write(nwb)
    with h5py.File(f"{out_dir}/bad-index.nwb", "a") as f:
        dtype = f["units/spike_times_index"].dtype
        f["units/spike_times_index"][...] = np.array([2, 7], dtype=dtype)
    return {"index_dtype": str(dtype)}


def read_export(path):
    """Values of an exported file as pynwb reads them, and nwbinspector's findings."""
    from nwbinspector import inspect_nwbfile

    with NWBHDF5IO(path, "r") as io:
        nwb = io.read()
        beh = nwb.processing["behavior"]
        spikes = nwb.processing["ecephys"]["binned_spikes"]
        out = {
            "identifier": nwb.identifier,
            "session_start_time": nwb.session_start_time.isoformat(),
            "subject_id": nwb.subject.subject_id,
            "species": nwb.subject.species,
            "notes": nwb.notes,
            "data_collection": nwb.data_collection,
            "spikes": np.asarray(spikes.data[:]).tolist(),
            "spikes_unit": spikes.unit,
            "spikes_description": spikes.description,
            "spike_times": np.asarray(spikes.get_timestamps()[:]).tolist(),
            "behavior": np.asarray(beh["behavior"].data[:]).tolist() if "behavior" in beh.data_interfaces else None,
            "decoded": np.asarray(beh["decoded"].data[:]).tolist(),
            "decoded_times": np.asarray(beh["decoded"].get_timestamps()[:]).tolist(),
            "imputed": np.asarray(beh["decoded_imputed"].data[:]).ravel().tolist(),
            "reset": np.asarray(beh["decoded_reset"].data[:]).ravel().tolist(),
        }
    findings = list(inspect_nwbfile(nwbfile_path=path))
    out["findings"] = [{"importance": f.importance.name, "check": f.check_function_name, "message": f.message,
                        "location": f.location} for f in findings]
    return out


if __name__ == "__main__":
    kind, args = sys.argv[1], sys.argv[2:]
    if kind == "units":
        result = units_session(args[0], args[1], int(args[2]))
    elif kind == "tutorial":
        result = tutorial_session(args[0], int(args[1]))
    elif kind == "bad":
        result = bad_files(args[0])
    elif kind == "read-export":
        result = read_export(args[0])
    else:
        raise SystemExit(f"unknown kind {kind}")
    print(json.dumps(result))
