"""Grids: every combination of one point per axis is a spec, the file's own spec with the chosen
points' overrides merged over it in axis order; `FILE@POINT` loads one."""

from __future__ import annotations

from mixc.lang.lower import load

GRID = """
source t : text { files = "t.txt" }
pack { seq_len = 64 }
interleave { loss = text_only }
mixture { 100% t }
budget { steps = 10 }
grid {
  axis seq {
    short {}
    long { pack { seq_len = 128 } }
  }
  axis train {
    low { train { optimizer { lr = 1e-4 } } }
    high { train { optimizer { lr = 1e-3 } } pack { remainder = pad } }
  }
}
"""


def spec_file(tmp_path, text: str = GRID):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "t.txt").write_text("hello")
    path = tmp_path / "g.mix"
    path.write_text(text)
    return path


def test_points_are_every_combination_first_axis_slowest(tmp_path):
    low = load(spec_file(tmp_path))
    assert low.ok and low.grid_points == ("short-low", "short-high", "long-low", "long-high")
    assert low.spec.pack.seq_len == 64 and low.spec.train.optimizer.lr == 3e-4  # the file alone: the base


def test_a_point_merges_its_overrides_over_the_base_axis_by_axis(tmp_path):
    path = spec_file(tmp_path)
    point = load(f"{path}@long-high")
    assert point.ok, [d.message for d in point.diagnostics]
    spec = point.spec
    assert (spec.pack.seq_len, spec.pack.remainder, spec.train.optimizer.lr) == (128, "pad", 1e-3)
    assert spec.interleave.loss == "text_only"  # untouched fields keep the base's values
    assert load(f"{path}@short-low").spec.pack == load(path).spec.pack


def test_an_unknown_point_lists_the_known_ones(tmp_path):
    low = load(f"{spec_file(tmp_path)}@long-hi")
    assert not low.ok
    (diag,) = [d for d in low.diagnostics if d.code == "grid.point"]
    assert "no grid point 'long-hi'" in diag.message and "long-high" in (diag.hint or "")
    assert diag.span is not None and diag.span.line == 7  # the grid's header


def test_a_file_whose_name_has_an_at_sign_is_a_file(tmp_path):
    path = spec_file(tmp_path)
    odd = tmp_path / "x@y.mix"
    odd.write_text(path.read_text())
    assert load(odd).ok
