"""Issue 12 on ``--executor docker``: an args-only container runs the local image's own ENTRYPOINT
(read from the engine), as a cluster's container runtime would. The image is built here from
localflow's busybox base with the network off; the pipeline is compiled by the real kfp compiler."""
import io
import uuid

import pytest
from kfp import dsl

from docker_support import BUSYBOX_IMAGE, docker_client, require_image  # noqa: F401  (fixture)

pytestmark = pytest.mark.docker

_DOCKERFILE = f"""FROM {BUSYBOX_IMAGE}
ENTRYPOINT ["sh", "-c", "mkdir -p \\"$(dirname \\"$1\\")\\" && echo \\"entrypoint got $0\\" > \\"$1\\""]
"""


@pytest.fixture
def entrypoint_image(docker_client):  # noqa: F811
    require_image(docker_client, BUSYBOX_IMAGE)
    tag = f"localflow-test/entrypoint:{uuid.uuid4().hex[:8]}"
    docker_client.images.build(fileobj=io.BytesIO(_DOCKERFILE.encode()), tag=tag, network_mode="none", rm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


def test_an_args_only_container_runs_the_local_images_entrypoint(localflow, entrypoint_image):
    @dsl.container_component
    def args_only(word: str, out: dsl.OutputPath(str)):
        return dsl.ContainerSpec(image=entrypoint_image, args=[word, out])

    @dsl.pipeline(name="docker-entrypoint")
    def pipe() -> str:
        return args_only(word="hello").set_caching_options(False).output

    run = localflow.run(pipe, executor="docker")
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"].strip() == "entrypoint got hello"
