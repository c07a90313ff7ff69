import numpy as np
import tifffile

from pipeline.ingest.demo import DemoSpec, field_names, generate_demo, synth_field


def test_layout_matches_bbbc020(demo_root):
    images = demo_root / "BBBC020_v1_images"
    names = field_names(8)
    assert sorted(p.name for p in images.iterdir()) == sorted(names)
    for name in names:
        for suffix in ("c1", "c5", "(c1+c5)"):
            rgb = tifffile.imread(images / name / f"{name}_{suffix}.TIF")
            assert rgb.shape == (128, 160, 3) and rgb.dtype == np.uint8
        c1 = tifffile.imread(images / name / f"{name}_c1.TIF")
        assert np.array_equal(c1[..., 0], c1[..., 1])  # the false-colour lookup: R equals G
    cells = list((demo_root / "BBC020_v1_outlines_cells").glob("*_c1_*.TIF"))
    nuclei = list((demo_root / "BBC020_v1_outlines_nuclei").glob("*_c5_*.TIF"))
    assert cells and len(cells) == len(nuclei)
    mask = tifffile.imread(cells[0])
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    # The 30min series has images but no ground truth, as in BBBC020.
    assert not any("30min" in p.name for p in cells)


def test_annotated_objects_avoid_border_and_nuclei_sit_inside_cells(demo_root):
    folder = demo_root / "BBC020_v1_outlines_cells"
    for cell_path in sorted(folder.glob("*.TIF"))[:15]:
        cell = tifffile.imread(cell_path) > 0
        assert not (cell[0].any() or cell[-1].any() or cell[:, 0].any() or cell[:, -1].any())
        nuc_path = demo_root / "BBC020_v1_outlines_nuclei" / cell_path.name.replace("_c1_", "_c5_")
        nucleus = tifffile.imread(nuc_path) > 0
        assert nucleus.any() and not (nucleus & ~cell).any()


def test_deterministic_and_realistic():
    spec = DemoSpec(n_fields=2, height=128, width=160, seed=3)
    a, b = synth_field(spec, 1), synth_field(spec, 1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c1, _, cells, _ = a
    inside = np.any(cells, axis=0)
    assert c1[inside].mean() > c1[~inside].mean() + 0.1  # cells are brighter than background


def test_cells_touch_and_overlap_somewhere():
    spec = DemoSpec(n_fields=6, height=128, width=160, seed=0)
    overlaps = 0
    for index in range(6):
        cells = synth_field(spec, index)[2]
        overlaps += sum(
            int(np.logical_and(x, y).sum()) for i, x in enumerate(cells) for y in cells[i + 1 :]
        )
    assert overlaps > 0


def test_generate_is_idempotent(tmp_path):
    spec = DemoSpec(n_fields=2, height=64, width=96)
    root = generate_demo(tmp_path / "d", spec)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.TIF")}
    generate_demo(root, spec)
    assert before == {p: p.stat().st_mtime_ns for p in root.rglob("*.TIF")}
