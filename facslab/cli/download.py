"""The ``download`` command: datasets released as lists of image URLs (EmotioNet)."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ArgumentParser

from facslab.badinput import BadInputError


def _download(args, parser=None) -> int:
    from facslab.download import download_emotionet

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise BadInputError(out, "a file, not a folder: give the folder the images go to")
    summary = download_emotionet(args.sheet, out, workers=args.workers, timeout=args.timeout, retries=args.retries,
                                 progress=not args.quiet)
    print(summary)
    if summary.failures:
        print(f"{len(summary.failures)} image(s) not fetched: listed with their errors in {out / 'errors.csv'}; run the "
              "same command again to retry only those")
        return 1
    return 0


#: the commands ``add_commands`` adds -> each one's line in ``facslab --help`` (see ``facslab.cli``)
COMMANDS = {
    'download': 'Fetch the images of a dataset released as URLs (resumable: a rerun fetches only what is missing).',
}


def add_commands(sub) -> dict:
    """The group's subcommands on ``sub``: name -> (parser, handler)."""
    download = ArgumentParser(exit_on_error=False, description=COMMANDS["download"])
    download.add_argument("dataset", choices=["emotionet"])
    download.add_argument("sheet", help="the release's sheet (EmotioNet_FACS_aws_2020_24600.csv or .xlsx)")
    download.add_argument("out", help="the folder of the copy: images/, mapping.csv, errors.csv and the sheet")
    download.add_argument("--workers", type=int, default=8, help="images fetched at once")
    download.add_argument("--timeout", type=float, default=20.0, help="seconds per request")
    download.add_argument("--retries", type=int, default=2, help="retries of a connection error or a 429/5xx answer")
    download.add_argument("--quiet", action="store_true")
    sub.add_subcommand("download", download, help=download.description)
    return {"download": (download, _download)}
