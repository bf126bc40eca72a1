"""Run KFP lightweight Python components offline, without their pip bootstrap (IR notes 9.1).

A ``@dsl.component`` compiles to a container command that pip-installs its requirements on
every start (about 0.5 s even when nothing needs installing) and then writes the module source
to a temporary file and runs ``python3 -m kfp.dsl.executor_main``. localflow recognises that
command by its exact element layout, checks the requirements in a local interpreter once, and
runs the executor directly.

Recognised forms (``command`` of the executor's container):

- ``[sh, -c, <pip bootstrap>, sh, -ec, <runner>, <module source>]`` (default; packages,
  index URLs and ``use_venv`` vary the bootstrap);
- ``[sh, -ec, <runner>, <module source>]`` (``install_kfp_package=False`` and no packages);
- ``[python3, -m, kfp.dsl.executor_main]`` (containerized component, ``target_image=``).

Follows kubeflow/pipelines ``sdk/python/kfp/dsl/component_factory.py`` (the emitted scripts)
and ``sdk/python/kfp/dsl/executor_main.py`` (what the runner executes).
"""
from __future__ import annotations

import functools
import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field

from localflow.errors import ExecutorError

__all__ = [
    "LightweightCommand",
    "parse_lightweight",
    "missing_requirements",
    "requirement_report",
    "local_argv",
    "relax_kfp_pin",
    "describe_report",
    "LAUNCHER",
    "LOCAL_ENV",
]

#: Environment the component process should get (the launcher also sets it itself).
LOCAL_ENV = {"_KFP_RUNTIME": "true"}

_EXECUTOR_MODULES = ("kfp.dsl.executor_main", "kfp.components.executor_main")
_RUNNER = re.compile(
    r'program_path=\$\(mktemp -d\) printf "%s" "\$0" > "\$program_path/ephemeral_component\.py" '
    r'(?:_KFP_RUNTIME=true )?python3 -m (?P<module>kfp\.(?:dsl|components)\.executor_main) '
    r'--component_module_path "\$program_path/ephemeral_component\.py" "\$@"'
)
_ENSUREPIP = re.compile(
    r'if ! \[ -x "\$\(command -v pip\)" \]; then python3 -m ensurepip \|\| python3 -m ensurepip --user '
    r'\|\| apt-get install python3-pip fi'
)
_CHAIN = '&& "$0" "$@"'
#: pip options that take a value; the value is dropped with the flag (index URLs are kept aside).
_PIP_VALUE_FLAGS = frozenset({
    "--index-url", "-i", "--extra-index-url", "--trusted-host", "--find-links", "-f",
    "--constraint", "-c", "--requirement", "-r", "--target", "-t", "--prefix", "--root",
    "--platform", "--python-version", "--implementation", "--abi", "--src", "--upgrade-strategy",
    "--progress-bar", "--cache-dir", "--proxy", "--retries", "--timeout", "--log", "--cert",
    "--client-cert", "--global-option", "--config-settings", "-C", "--editable", "-e",
})


@dataclass(frozen=True)
class LightweightCommand:
    """A recognised lightweight (or containerized) Python component command.

    ``form`` is ``"bootstrap"``, ``"no-install"`` or ``"containerized"``. ``requirements`` are
    the pip specs the bootstrap installs, in order, flags removed (``kfp==2.17.3``,
    ``typing-extensions>=3.7.4,<5; python_version<"3.9"``); ``index_urls`` and
    ``trusted_hosts`` the pip options given with them; ``use_venv`` whether the bootstrap makes
    a venv; ``function_name`` the ``--function_to_execute`` value; ``module_source`` the Python
    module text (None when containerized); ``runner_script`` / ``bootstrap_script`` the shell
    texts as compiled; ``executor_module`` the module the runner starts; ``args`` the
    container args, unchanged (placeholders included when not yet resolved).
    """

    form: str
    function_name: str
    args: tuple[str, ...]
    module_source: str | None = None
    requirements: tuple[str, ...] = ()
    index_urls: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()
    use_venv: bool = False
    runner_script: str | None = None
    bootstrap_script: str | None = None
    executor_module: str = "kfp.dsl.executor_main"
    install_commands: tuple[tuple[str, ...], ...] = field(default=(), repr=False)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _function_name(args: list[str]) -> str | None:
    for i, arg in enumerate(args[:-1]):
        if arg == "--function_to_execute":
            return args[i + 1]
    for arg in args:
        if arg.startswith("--function_to_execute="):
            return arg.split("=", 1)[1]
    return None


def _shell_commands(line: str) -> list[list[str]]:
    """Split one shell line into simple commands at ``&&``, ``||``, ``;`` and ``|``."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) <= set("();<>|&"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def _python_module(cmd: list[str], module: str) -> list[str] | None:
    """Arguments after ``python3 -m <module>`` (leading VAR=value assignments allowed)."""
    i = 0
    while i < len(cmd) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", cmd[i]):
        i += 1
    parts = module.split()
    head = cmd[i:i + 2 + len(parts)]
    if len(head) == 2 + len(parts) and re.fullmatch(r"python(3(\.\d+)?)?", head[0]) and head[1] == "-m" \
            and head[2:] == parts:
        return cmd[i + 2 + len(parts):]
    return None


def _parse_bootstrap(script: str):
    """Return (requirements, index_urls, trusted_hosts, use_venv, install_commands) or None."""
    squashed = _squash(script)
    if not _ENSUREPIP.match(squashed) or not squashed.endswith(_CHAIN):
        return None
    if "\nfi\n" not in script:
        return None
    body = script.split("\nfi\n", 1)[1]
    requirements: list[str] = []
    index_urls: list[str] = []
    trusted: list[str] = []
    installs: list[tuple[str, ...]] = []
    use_venv = False
    for line in body.splitlines():
        try:
            commands = _shell_commands(line)
        except ValueError:
            return None
        for cmd in commands:
            if _python_module(cmd, "venv") is not None:
                use_venv = True
                continue
            rest = _python_module(cmd, "pip install")
            if rest is None:
                continue
            installs.append(tuple(rest))
            i = 0
            while i < len(rest):
                token = rest[i]
                flag, eq, inline = token.partition("=")
                if token.startswith("-"):
                    name = flag if eq else token
                    if name in _PIP_VALUE_FLAGS:
                        value = inline if eq else (rest[i + 1] if i + 1 < len(rest) else "")
                        if name in ("--index-url", "-i", "--extra-index-url") and value not in index_urls:
                            index_urls.append(value)
                        if name == "--trusted-host" and value not in trusted:
                            trusted.append(value)
                        i += 1 if eq else 2
                        continue
                    i += 1
                    continue
                if token not in requirements:
                    requirements.append(token)
                i += 1
    if not installs:
        return None
    return tuple(requirements), tuple(index_urls), tuple(trusted), use_venv, tuple(installs)


def parse_lightweight(command: list[str], args: list[str] | tuple[str, ...]) -> LightweightCommand | None:
    """Recognise a lightweight/containerized Python component command by its exact layout.

    ``command``/``args`` are a PipelineContainerSpec's lists (resolved or not; the shell
    scripts and the module source carry no placeholders). Returns None for anything else
    (container components, changed scripts), in which case the command must run as written.
    """
    command = list(command or [])
    args = tuple(args or ())
    fname = _function_name(list(args))
    if fname is None:
        return None
    if len(command) == 3 and command[1] == "-m" and command[2] in _EXECUTOR_MODULES \
            and re.fullmatch(r"python(3(\.\d+)?)?", command[0]):
        return LightweightCommand(form="containerized", function_name=fname, args=args, executor_module=command[2])
    if len(command) == 7 and command[:2] == ["sh", "-c"] and command[3:5] == ["sh", "-ec"]:
        bootstrap, runner, source = command[2], command[5], command[6]
    elif len(command) == 4 and command[:2] == ["sh", "-ec"]:
        bootstrap, runner, source = None, command[2], command[3]
    else:
        return None
    match = _RUNNER.fullmatch(_squash(runner))
    if match is None:
        return None
    if bootstrap is None:
        return LightweightCommand(form="no-install", function_name=fname, args=args, module_source=source,
                                  runner_script=runner, executor_module=match["module"])
    parsed = _parse_bootstrap(bootstrap)
    if parsed is None:
        return None
    requirements, index_urls, trusted, use_venv, installs = parsed
    return LightweightCommand(
        form="bootstrap", function_name=fname, args=args, module_source=source, requirements=requirements,
        index_urls=index_urls, trusted_hosts=trusted, use_venv=use_venv, runner_script=runner,
        bootstrap_script=bootstrap, executor_module=match["module"], install_commands=installs,
    )


# ---------------------------------------------------------------------------------------------
# Requirement check (one subprocess of the target interpreter, cached)
# ---------------------------------------------------------------------------------------------
_CHECK_SCRIPT = r'''
import json, re, sys
try:
    from packaging.requirements import Requirement, InvalidRequirement
except ImportError:
    try:
        from pip._vendor.packaging.requirements import Requirement, InvalidRequirement
    except ImportError:
        Requirement = None
        InvalidRequirement = ValueError
import importlib.metadata as md

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

installed = None
def version_of(name):
    global installed
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        pass
    if installed is None:
        installed = {}
        for dist in md.distributions():
            dname = dist.metadata["Name"]
            if dname:
                installed.setdefault(norm(dname), dist.version)
    return installed.get(norm(name))

out = []
for spec in json.loads(sys.argv[1]):
    if Requirement is None:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([^\s;,]+))?\s*$", spec)
        if not m:
            out.append([spec, None, "cannot check without the packaging module"])
            continue
        have = version_of(m.group(1))
        ok = have is not None and (m.group(2) is None or have == m.group(2))
        if not ok:
            out.append([spec, have, None])
        continue
    try:
        req = Requirement(spec)
    except InvalidRequirement:
        out.append([spec, None, "not a name-based requirement; cannot check it offline"])
        continue
    if req.marker is not None and not req.marker.evaluate():
        continue
    have = version_of(req.name)
    if have is None or not req.specifier.contains(have, prereleases=True):
        out.append([spec, have, None])
print(json.dumps(out))
'''


@functools.lru_cache(maxsize=256)
def _check(python: str, requirements: tuple[str, ...]) -> tuple[tuple[str, str | None, str | None], ...]:
    if not requirements:
        return ()
    try:
        proc = subprocess.run(
            [python, "-c", _CHECK_SCRIPT, json.dumps(list(requirements))],
            capture_output=True, text=True, timeout=120, check=False, cwd="/",
        )
    except FileNotFoundError:
        raise ExecutorError(f"python interpreter {python!r} not found",
                            fix="point the image mapping in localflow.yaml `images:` at an existing python") from None
    except subprocess.TimeoutExpired:
        raise ExecutorError(f"checking requirements with {python!r} took more than 120 s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ExecutorError(f"{python!r} could not check requirements (exit {proc.returncode}): {tail[0]}",
                            fix="map the image to a working Python 3.8+ interpreter in localflow.yaml `images:`")
    return tuple(tuple(entry) for entry in json.loads(proc.stdout.strip().splitlines()[-1]))


def requirement_report(requirements, python: str) -> list[tuple[str, str | None, str | None]]:
    """``[(spec, installed version or None, note or None)]`` for each unmet requirement in
    ``python`` (markers evaluated there; a wrong version is unmet). Cached per
    (python, requirements); one subprocess per new key."""
    return [tuple(entry) for entry in _check(python, tuple(requirements))]


def missing_requirements(requirements, python: str) -> list[str]:
    """Specs from ``requirements`` that the interpreter ``python`` does not satisfy.

    Runs ONE subprocess of ``python`` (cwd ``/``) that checks each spec with ``importlib.metadata`` and
    ``packaging.requirements`` (or pip's vendored copy): markers are evaluated in that
    interpreter (``python_version<"3.9"`` is skipped on 3.11), a version outside the specifier
    counts as missing, specs that are not name-based (bare URLs, paths) are reported as missing
    because they cannot be checked offline. Cached per ``(python, tuple(requirements))``.
    Raises ExecutorError when the interpreter cannot be run.
    """
    return [spec for spec, _, _ in requirement_report(requirements, python)]


# ---------------------------------------------------------------------------------------------
# Local argv
# ---------------------------------------------------------------------------------------------
#: ``python -c`` program: argv[1] is the module source, argv[2:] the component args. It sets
#: ``_KFP_RUNTIME=true`` (so ``import kfp`` stays light), writes the source to
#: ``<tmp>/ephemeral_component.py`` exactly like the compiled runner script, runs
#: ``kfp.dsl.executor_main`` as ``__main__`` and removes the temporary directory at exit. The
#: removal is an ``atexit`` handler, not a ``finally``: Python prints an uncaught exception's
#: traceback before it runs atexit handlers, and the traceback reads the component's source lines
#: from that file (kfp.local's tests assert the ``raise`` line is in the log).
LAUNCHER = (
    "import atexit, os, runpy, shutil, sys, tempfile\n"
    "os.environ['_KFP_RUNTIME'] = 'true'\n"
    "d = tempfile.mkdtemp(prefix='kfp-component-')\n"
    "atexit.register(shutil.rmtree, d, True)\n"
    "p = os.path.join(d, 'ephemeral_component.py')\n"
    "with open(p, 'w', encoding='utf-8') as f:\n"
    "    f.write(sys.argv[1])\n"
    "sys.argv = [sys.argv[0], '--component_module_path', p] + sys.argv[2:]\n"
    "runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
)


def local_argv(cmd: LightweightCommand, python: str, *, image: str | None = None, check: bool = True) -> list[str]:
    """argv that runs the component with interpreter ``python``: no pip bootstrap, no ``sh``.

    Shape (nothing for the caller to write first):
    ``[python, "-c", LAUNCHER, <module source>, *cmd.args]`` for the bootstrap and no-install
    forms (the launcher sets ``_KFP_RUNTIME=true`` itself; ``LOCAL_ENV`` lists it for callers
    that build the environment), and ``[python, "-m", <executor module>, *cmd.args]`` for a
    containerized component (its module is found through ``kfp_config.ini`` in the working
    directory, as in the image). ``cmd.args`` are passed unchanged, so resolve the container
    args with :func:`~localflow.pipelines.placeholders.resolve_command` BEFORE calling
    :func:`parse_lightweight` (resolving the returned list would also scan the module source,
    where a literal ``{{$...}}`` in user code would be taken for a placeholder).

    With ``check`` the requirements (and ``kfp`` itself) are checked in ``python`` first, once
    per interpreter and requirement set. Raises ExecutorError listing exactly what is missing
    and the fix: ``<python> -m pip install '<spec>' ...`` or an ``images:`` mapping in
    ``localflow.yaml`` to an interpreter that has them.
    """
    requirements = [relax_kfp_pin(r) for r in cmd.requirements]
    if check and not any(_req_name(r) == "kfp" for r in requirements):
        requirements.append("kfp")  # the runner needs kfp.dsl.executor_main in any form
    if check:
        report = requirement_report(tuple(requirements), python)
        if report:
            _raise_missing(report, cmd, python, image)
    if cmd.form == "containerized":
        return [python, "-m", cmd.executor_module, *cmd.args]
    return [python, "-c", LAUNCHER.format(module=cmd.executor_module), cmd.module_source or "", *cmd.args]


def relax_kfp_pin(spec: str) -> str:
    """``kfp==2.16.0`` -> ``kfp>=2,<3``: the SDK pins the version it compiled with, but any kfp of
    the same major version runs ``kfp.dsl.executor_main`` with the same ExecutorInput contract, and
    offline there is no way to install the exact pin. Other requirements stay as written."""
    m = re.fullmatch(r"\s*kfp\s*==\s*(\d+)(\.[0-9A-Za-z.]*)?\s*", spec)
    if not m:
        return spec
    major = int(m.group(1))
    return f"kfp>={major},<{major + 1}"


def _req_name(spec: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else ""


def describe_report(report) -> list[str]:
    """``["x==1 (not installed)", "y>2 (installed: 1.0)", ...]`` for a :func:`requirement_report`."""
    parts = []
    for spec, have, note in report:
        if note:
            parts.append(f"{spec} ({note})")
        elif have:
            parts.append(f"{spec} (installed: {have})")
        else:
            parts.append(f"{spec} (not installed)")
    return parts


def _raise_missing(report, cmd: LightweightCommand, python: str, image: str | None) -> None:
    parts = describe_report(report)
    options = "".join(f" --index-url {u}" if i == 0 else f" --extra-index-url {u}"
                      for i, u in enumerate(cmd.index_urls))
    install = f"{python} -m pip install{options} " + " ".join(shlex.quote(spec) for spec, _, _ in report)
    where = f"image {image!r}" if image else "this component"
    raise ExecutorError(
        f"{where} (function {cmd.function_name}) needs packages that {python} does not have: {', '.join(parts)}",
        fix=f"run `{install}`, or map the image to an interpreter that has them in localflow.yaml `images:`",
    )
