"""Dataset references: `name`, `name@latest`, `name@7`, `name@TAG`."""

from dataclasses import dataclass

from assay.names import NAME_PATTERN
from datasets_registry.errors import RegistryError


def check_name(name: str) -> str:
    """Return `name` if it is a valid dataset name, else raise RegistryError."""
    if not NAME_PATTERN.match(name):
        raise RegistryError(
            f"invalid dataset name {name!r}: use lowercase letters, digits, '.', '_' and '-' "
            "(at most 128 characters, starting with a letter or digit)"
        )
    return name


@dataclass(frozen=True)
class DatasetRef:
    """A parsed reference. `selector` is None for latest, an int version, or a tag name."""

    name: str
    selector: int | str | None = None

    def __str__(self) -> str:
        return self.name if self.selector is None else f"{self.name}@{self.selector}"


def parse_ref(ref: str) -> DatasetRef:
    """Parse `name[@version|@tag|@latest]`."""
    name, _, selector = ref.partition("@")
    check_name(name)
    if not selector or selector == "latest":
        return DatasetRef(name)
    if selector.isdigit():
        return DatasetRef(name, int(selector))
    if not NAME_PATTERN.match(selector):
        raise RegistryError(f"invalid version or tag {selector!r} in {ref!r}")
    return DatasetRef(name, selector)
