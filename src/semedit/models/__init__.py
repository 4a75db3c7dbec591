"""Models: architectures, configs and loading (what `from_pretrained` needs): the embedded toon-64
family, backbones, CLIP features, the attribute evaluator. Training lives in `semedit.training`."""
