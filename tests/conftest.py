import pytest

from tests.helpers import tiny_sd_folder


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """A diffusers folder of a tiny random Stable Diffusion model (16x16 images)."""
    path = tmp_path_factory.mktemp("sd") / "sd"
    tiny_sd_folder(path)
    return path


@pytest.fixture(scope="session")
def tiny(tiny_folder):
    """The tiny random Stable Diffusion backbone, loaded through load_backbone."""
    from semedit.models.backbone import load_backbone

    return load_backbone(str(tiny_folder))


@pytest.fixture(scope="session")
def toon64():
    """The embedded toon-64 family, loaded once (the service's cached backbone)."""
    from semedit.service import get_backbone

    return get_backbone("toon-64")
