"""Errors as ``metav1.Status`` objects, as the API server writes them
(``staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go``): ``{kind: Status, apiVersion: v1,
metadata: {}, status: Failure, message, reason, code, details}``. Admission's field-path errors
become ``422 Invalid`` with ``details.causes[].field``, as ``errors.NewInvalid`` builds them.
"""
from __future__ import annotations

from localflow.errors import AlreadyExists, Conflict, Gone, LocalflowError, NotFound, SpecError

__all__ = ["status", "from_error", "ApiError"]


class ApiError(Exception):
    """An error the API answers as a ``Status``: ``code`` (HTTP), ``reason``, ``message``,
    ``details``."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def body(self) -> dict:
        """The ``Status`` object."""
        return status(self.code, self.reason, self.message, self.details)


def status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    """A ``metav1.Status`` (``status: Success`` for 2xx codes)."""
    out = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success" if code < 300 else "Failure",
           "message": message, "reason": reason, "code": code}
    if details:
        out["details"] = details
    return out


def from_error(exc: Exception, *, kind: str = "", group: str = "", name: str = "") -> ApiError:
    """The :class:`ApiError` for a store or admission error: NotFound 404, AlreadyExists 409,
    Conflict 409, Gone 410 (``Expired``), SpecError 422 (``Invalid``, the field path in
    ``details.causes``); any other localflow error 400 (``BadRequest``)."""
    if isinstance(exc, ApiError):
        return exc
    details = {"name": name, "group": group, "kind": kind} if (name or kind) else None
    text = exc.message if isinstance(exc, LocalflowError) else str(exc)
    if isinstance(exc, NotFound):
        return ApiError(404, "NotFound", text, details)
    if isinstance(exc, AlreadyExists):
        return ApiError(409, "AlreadyExists", text, details)
    if isinstance(exc, Conflict):
        return ApiError(409, "Conflict", text, details)
    if isinstance(exc, Gone):
        return ApiError(410, "Expired", text)
    if isinstance(exc, SpecError):
        line = str(exc)
        field = exc.path[len(kind) + 1:] if kind and exc.path.startswith(kind + ".") else exc.path  # the API's paths start at the object
        cause = {"reason": "FieldValueInvalid", "message": line, "field": field}
        return ApiError(422, "Invalid", f'{kind or "object"} "{name}" is invalid: {line}',
                        {**(details or {}), "causes": [cause]})
    return ApiError(400, "BadRequest", text)
