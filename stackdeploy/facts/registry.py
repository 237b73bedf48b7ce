"""What a registry holds, as the host's engine can reach it (image_distribution "registry")."""

from __future__ import annotations

from pyinfra.api import FactBase, StringCommand

from stackdeploy import commands
from stackdeploy.facts import unexpected_output


class RegistryReachable(FactBase[bool]):
    """True when every image is present on the host or its registry answers for it."""

    requires_command = "docker"

    @staticmethod
    def default() -> bool:
        return False  # no docker CLI: no image here, and nothing to ask a registry with

    def command(self, images: list[str]) -> StringCommand:
        return commands.registry_reachable(images)

    def process(self, output: list[str]) -> bool:
        answer = "".join(output).strip()
        if answer not in ("yes", "no"):
            raise unexpected_output("RegistryReachable", output)
        return answer == "yes"


class RegistryImages(FactBase[frozenset[str]]):
    """The images (registry names) their registry holds, as it answers itself. A registry that
    does not answer fails the read (see ``commands.registry_images``)."""

    requires_command = "docker"

    @staticmethod
    def default() -> frozenset[str]:
        return frozenset()  # no docker CLI to ask with: nothing known to be there

    def command(self, images: list[str], insecure: bool) -> StringCommand:
        return commands.registry_images(images, insecure)

    def process(self, output: list[str]) -> frozenset[str]:
        answers = [line.strip().partition(" ") for line in output if line.strip()]
        if not answers or any(answer not in ("present", "absent") or not image for answer, _, image in answers):
            raise unexpected_output("RegistryImages", output)
        return frozenset(image for answer, _, image in answers if answer == "present")
