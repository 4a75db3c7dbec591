import pytest

from tests.helpers import tiny_sd_folder


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny random Stable Diffusion backbone, loaded through load_backbone."""
    from semedit.models.backbone import load_backbone

    path = tmp_path_factory.mktemp("sd") / "sd"
    tiny_sd_folder(path)
    return load_backbone(str(path))
