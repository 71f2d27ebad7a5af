"""``decrappify export``: a trained model as a BioImage Model Zoo (bioimage.io) package."""

from __future__ import annotations

from pathlib import Path

import typer

from decrappify.cli._shell import drive, err_console, handle_errors, out_console, summary_table


@handle_errors
def export(
    model: Path = typer.Argument(..., help="Model folder or .safetensors file."),
    bioimageio: Path = typer.Option(
        ..., "--bioimageio", help="Write a bioimage.io model package (.zip)."
    ),
    test_image: Path | None = typer.Option(
        None,
        "--test-image",
        help="Low-resolution image for the test tensors (default: a synthetic image "
        "crappified by the model's crappifier).",
    ),
    name: str | None = typer.Option(None, "--name", help="Package name."),
    description: str | None = typer.Option(None, "--description", help="One paragraph."),
    author: list[str] | None = typer.Option(
        None, "--author", help="Who trained the model (repeat for several)."
    ),
    maintainer: list[str] | None = typer.Option(
        None, "--maintainer", help="Maintainer's name, one per --github-user (repeat)."
    ),
    github_user: list[str] | None = typer.Option(
        None, "--github-user", help="GitHub account of a maintainer (repeat)."
    ),
    cite: list[str] | None = typer.Option(
        None,
        "--cite",
        help="A citation of your own: its text followed by its DOI or URL (repeat).",
    ),
    license: str = typer.Option("CC-BY-4.0", "--license", help="SPDX licence of the weights."),
    weights: str = typer.Option(
        "pytorch_state_dict,torchscript",
        "--weights",
        help="Weight formats: pytorch_state_dict, torchscript (comma-separated).",
    ),
    test: bool = typer.Option(
        True, "--test/--no-test", help="Run bioimageio.core's test before writing."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic test image."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing package."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Export a trained model for bioimage.io (deepImageJ, ilastik, bioimageio.core)."""
    from decrappify.api import iter_export_bioimageio

    result = drive(
        iter_export_bioimageio(
            model,
            bioimageio,
            test_image=test_image,
            name=name,
            description=description,
            authors=author or None,
            maintainers=maintainer or None,
            github_users=github_user or None,
            cite=cite or None,
            license=license,
            weights=weights,
            test=test,
            overwrite=overwrite,
            seed=seed,
        ),
        quiet=quiet,
    )
    if result.checks:
        out_console.print(summary_table("bioimageio test", ("check", "status"), result.checks))
    verdict = "not tested" if result.status is None else f"bioimageio test {result.status}"
    err_console.print(f"wrote {result.path} ({verdict}, {result.seconds:.0f} s)")
