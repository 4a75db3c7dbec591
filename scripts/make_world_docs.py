"""Regenerates the pictures in docs/world.md: python scripts/make_world_docs.py"""

from pathlib import Path

from semedit.world import diptych, ground_truth_edit, record_seed, render, sample_pair, sample_record
from semedit.world.sheets import attribute_sheet, diptych_sheet, edit_sheet, sample_sheet

out = Path(__file__).resolve().parent.parent / "docs" / "images"
out.mkdir(parents=True, exist_ok=True)

base = sample_record(3).replace(head_x=0.0, head_y=0.0, head_scale=1.0, head_tilt=0.0)
attribute_sheet(base, render).save(out / "world_attributes.png")
sample_sheet([render(sample_record(record_seed(0, i))) for i in range(8)]).save(out / "world_samples.png")

rec = sample_record(9).replace(eyes="open", expression="neutral", mouth="closed", glasses="none", costume="normal", hair_style="short", background="plain", gaze="centre")
edits = [dict(expression="laughing", mouth="open"), dict(eyes="closed"), dict(gaze="right"),
         dict(hair_style="curly", hair_colour="red"), dict(glasses="square"), dict(costume="santa"),
         dict(background="forest"), dict(head_x=3.0, head_tilt=-8.0)]
edit_sheet([ground_truth_edit(rec, **e) for e in edits]).save(out / "world_edits.png")

pairs = [sample_pair(record_seed(0, i), kind) for i, kind in enumerate(["costume", "expression"] * 2)]
diptych_sheet([diptych(s, t, template=k) for s, t, k in pairs]).save(out / "world_pairs.png")
print(f"wrote pictures to {out}; edit source record: {rec}")
