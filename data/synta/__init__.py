"""Syn-TA generator: an offline, CPU-only procedural equivalent of the benchmark's synthetic dataset.

    motions.py     the 100 fine classes as small motion programs (table CLASSES: official stem -> program, frames)
    render.py      the numpy ray caster (solids, ground, backdrop, sun and shadows), H.264 and PNG writers
    generator.py   scenes (camera, light, background), the dataset in Syn-TA's layout, contact sheets, the CLI

    python -m data.synta generate --out cache/synta_small --profile small
    python -m data.synta sheet --out docs/synta
"""
from data.synta.generator import (GENERATOR_VERSION, PROFILES, VIEWS, build_scene, contact_sheet, generate, main,
                                  render_scene)
