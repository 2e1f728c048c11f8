#!/usr/bin/env python3
"""Drives a running `ward serve` with the real Triton HTTP client (PyPI tritonclient[http]).

Run by scripts/serve-tritonclient.sh with the venv from scripts/lib-serve-client-venv.sh:

    python tests/serve/tritonclient_check.py --url 127.0.0.1:PORT --ca CA.pem \
        --token TOKEN --model mlp --input-npy IN.npy --expected-npy OUT.npy [--bad-token X]

Both clients talk TLS and verify the server's certificate against --ca only (not the
system store), with the host name checked:
  * tritonclient.http (sync, geventhttpclient): ssl=True, ssl_options={"ca_certs": CA} and
    ssl_context_factory=gevent.ssl.create_default_context. geventhttpclient then builds
    its context as create_default_context(cafile=CA) with check_hostname=True and
    CERT_REQUIRED (insecure=False), and sends SNI = the URL's host.
  * tritonclient.http.aio (aiohttp): ssl=True, ssl_context=ssl.create_default_context(cafile=CA).
Every request carries `Authorization: Bearer TOKEN` through the `headers=` argument. The
client adds its own headers to the dict it is given (Content-Encoding,
Inference-Header-Content-Length), so each call gets a fresh dict.

The expected output is what `ward predict` wrote for the same input: it is compared with
np.allclose(rtol=1e-5, atol=1e-6), so the server must run with `[output] precision = "full"`.
If the expected file's name (without .npy) is one of the model's outputs, that output is
compared; otherwise the model's first output.

Prints one `ok: ...` line per check; on the first failure prints `FAIL: ...` and exits 1.
"""

import argparse
import asyncio
import contextlib
import importlib.metadata
import pathlib
import ssl
import sys
import traceback

import gevent.ssl
import numpy as np
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException

RTOL = 1e-5
ATOL = 1e-6


class CheckFailed(Exception):
    pass


def fail(message):
    raise CheckFailed(message)


def ok(message):
    print(f"ok: {message}", flush=True)


@contextlib.contextmanager
def check(what):
    """Turns an unexpected exception inside a check into `FAIL: what: ...`."""
    try:
        yield
    except CheckFailed:
        raise
    except InferenceServerException as e:
        fail(f"{what}: InferenceServerException status={e.status()!r} message={e.message()!r}")
    except Exception as e:  # noqa: BLE001 - report whatever the client raised
        detail = "".join(traceback.format_exception_only(type(e), e)).strip()
        fail(f"{what}: unexpected {detail}")


def auth(token):
    """A fresh header dict per call (the client writes into the dict it is given)."""
    return {"Authorization": f"Bearer {token}"}


class RecordingClient(httpclient.InferenceServerClient):
    """The sync client, remembering the last POST response's encoding headers."""

    last_content_encoding = None
    last_header_length = None

    def _post(self, request_uri, request_body, headers, query_params):
        response = super()._post(request_uri, request_body, headers, query_params)
        self.last_content_encoding = response.get("Content-Encoding")
        self.last_header_length = response.get("Inference-Header-Content-Length")
        return response


def sync_client(url, ca, **extra_ssl_options):
    ssl_options = {"ca_certs": ca, **extra_ssl_options}
    return RecordingClient(
        url,
        ssl=True,
        ssl_options=ssl_options,
        ssl_context_factory=gevent.ssl.create_default_context,
        insecure=False,
        connection_timeout=10.0,
        network_timeout=60.0,
    )


def compare(what, got, expected):
    if got is None:
        fail(f"{what}: the output is missing from the response")
    if got.dtype != expected.dtype:
        fail(f"{what}: dtype {got.dtype}, expected {expected.dtype}")
    if got.shape != expected.shape:
        fail(f"{what}: shape {got.shape}, expected {expected.shape}")
    if not np.allclose(got, expected, rtol=RTOL, atol=ATOL):
        diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
        i = np.unravel_index(np.argmax(diff), diff.shape)
        fail(
            f"{what}: values differ (rtol={RTOL}, atol={ATOL}): max |diff| {diff[i]:.3g} "
            f"at {tuple(int(k) for k in i)}: got {got[i]!r}, expected {expected[i]!r}"
        )


def expect_status(what, want, fn, *args, **kwargs):
    """fn must raise InferenceServerException with HTTP status `want` and a JSON error body."""
    try:
        fn(*args, **kwargs)
    except InferenceServerException as e:
        status = str(e.status())
        if status != str(want):
            fail(f"{what}: status {status}, expected {want} (message {e.message()!r})")
        message = e.message() or ""
        if "exception occurred in the client while decoding" in message:
            fail(f"{what}: status {status} but the body is not JSON {{\"error\": ...}}: {message!r}")
        ok(f"{what}: {status} {message!r}")
        return
    except Exception as e:  # noqa: BLE001
        detail = "".join(traceback.format_exception_only(type(e), e)).strip()
        fail(f"{what}: expected InferenceServerException {want}, got {detail}")
    fail(f"{what}: succeeded, expected status {want}")


def data_input(x, binary=True, name="data", datatype="FP32"):
    inp = httpclient.InferInput(name, list(x.shape), datatype)
    inp.set_data_from_numpy(x, binary_data=binary)
    return inp


def output_form(result, name):
    """'binary' or 'json', from how the response carried the output."""
    out = result.get_output(name)
    if out is None:
        fail(f"output {name!r} missing from response {result.get_response()!r}")
    params = out.get("parameters") or {}
    if "binary_data_size" in params:
        if "data" in out:
            fail(f"output {name!r} has both binary_data_size and data")
        return "binary"
    if "data" in out:
        return "json"
    fail(f"output {name!r} has neither binary_data_size nor data: {out!r}")


def check_model_metadata(what, meta, model, input_shape, outputs_expected=None):
    if not isinstance(meta, dict):
        fail(f"{what}: not a JSON object: {meta!r}")
    if meta.get("name") != model:
        fail(f"{what}: name {meta.get('name')!r}, expected {model!r}")
    inputs = {t.get("name"): t for t in meta.get("inputs") or []}
    if "data" not in inputs:
        fail(f"{what}: no input 'data' in {meta.get('inputs')!r}")
    data = inputs["data"]
    if data.get("datatype") != "FP32":
        fail(f"{what}: input data datatype {data.get('datatype')!r}, expected 'FP32'")
    shape = data.get("shape")
    if shape != input_shape:
        fail(f"{what}: input data shape {shape!r}, expected {input_shape!r}")
    outputs = meta.get("outputs") or []
    names = [t.get("name") for t in outputs]
    if not names or not all(isinstance(n, str) and n for n in names):
        fail(f"{what}: bad outputs {outputs!r}")
    for t in outputs:
        if not isinstance(t.get("datatype"), str) or not isinstance(t.get("shape"), list):
            fail(f"{what}: output without datatype/shape: {t!r}")
    if outputs_expected is not None and names != outputs_expected:
        fail(f"{what}: outputs {names!r}, expected {outputs_expected!r}")
    return names


def run_sync(args, x, expected):
    url, ca, token, model = args.url, args.ca, args.token, args.model
    bad = args.bad_token

    # --- TLS: the certificate is verified against --ca, with the host name checked.
    with check("TLS without the CA"):
        c = httpclient.InferenceServerClient(url, ssl=True, connection_timeout=10.0)
        try:
            c.is_server_live(headers=auth(token))
        except ssl.SSLError as e:
            ok(f"TLS: a client trusting only the system store is refused ({e.__class__.__name__})")
        else:
            fail("TLS: a client without the dev CA connected: the certificate was not verified")
        finally:
            c.close()
    with check("TLS host name"):
        c = sync_client(url, ca, server_hostname="not-in-the-cert.invalid")
        try:
            c.is_server_live(headers=auth(token))
        except ssl.SSLError as e:
            ok(f"TLS: a host name not in the certificate is refused ({e.__class__.__name__})")
        else:
            fail("TLS: the server certificate was accepted for a host name it does not name")
        finally:
            c.close()

    client = sync_client(url, ca)

    # --- health and readiness
    with check("health"):
        for what, got, want in [
            ("is_server_live()", lambda: client.is_server_live(headers=auth(token)), True),
            ("is_server_ready()", lambda: client.is_server_ready(headers=auth(token)), True),
            (f"is_model_ready({model!r})",
             lambda: client.is_model_ready(model, headers=auth(token)), True),
            (f"is_model_ready({model!r}, '1')",
             lambda: client.is_model_ready(model, "1", headers=auth(token)), True),
            ("is_model_ready('nope')",
             lambda: client.is_model_ready("nope", headers=auth(token)), False),
            (f"is_model_ready({model!r}, '2') (no such version)",
             lambda: client.is_model_ready(model, "2", headers=auth(token)), False),
        ]:
            value = got()
            if value is not want:
                fail(f"{what} returned {value!r}, expected {want!r}")
            ok(f"{what} is {want}")

    # --- metadata
    with check("get_server_metadata()"):
        meta = client.get_server_metadata(headers=auth(token))
        for key, typ in [("name", str), ("version", str), ("extensions", list)]:
            if not isinstance(meta.get(key), typ):
                fail(f"get_server_metadata(): {key!r} missing or not {typ.__name__}: {meta!r}")
        if "binary_tensor_data" not in meta["extensions"]:
            fail(f"get_server_metadata(): extensions {meta['extensions']!r} lack 'binary_tensor_data'")
        ok(f"get_server_metadata(): name {meta['name']!r} version {meta['version']!r} "
           f"extensions {meta['extensions']!r}")

    input_shape = [-1] + list(x.shape[1:])
    with check(f"get_model_metadata({model!r})"):
        meta = client.get_model_metadata(model, headers=auth(token))
        outputs = check_model_metadata(f"get_model_metadata({model!r})", meta, model, input_shape)
        ok(f"get_model_metadata({model!r}): input data FP32 {input_shape}, outputs {outputs}, "
           f"platform {meta.get('platform')!r}, versions {meta.get('versions')!r}")
    with check(f"get_model_metadata({model!r}, '1')"):
        meta1 = client.get_model_metadata(model, "1", headers=auth(token))
        check_model_metadata(f"get_model_metadata({model!r}, '1')", meta1, model, input_shape,
                             outputs_expected=outputs)
        ok(f"get_model_metadata({model!r}, '1'): same input and outputs")

    stem = pathlib.Path(args.expected_npy).stem
    out_name = stem if stem in outputs else outputs[0]
    ok(f"comparing output {out_name!r} with {args.expected_npy}")

    # --- inference
    def infer(what, inputs, outputs_req=None, want_form="binary", **kwargs):
        with check(what):
            result = client.infer(model, inputs, outputs=outputs_req,
                                  headers=auth(token), **kwargs)
            resp = result.get_response()
            if resp.get("model_name") != model:
                fail(f"{what}: model_name {resp.get('model_name')!r}, expected {model!r}")
            form = output_form(result, out_name)
            if want_form is not None and form != want_form:
                fail(f"{what}: output {out_name!r} came as {form}, expected {want_form}")
            if form == "binary" and client.last_header_length is None:
                fail(f"{what}: binary output without an Inference-Header-Content-Length header")
            compare(what, result.as_numpy(out_name), expected)
            return result

    infer("infer, binary input (default), outputs unspecified -> binary", [data_input(x)])
    ok("infer, binary input (default): output matches")
    infer("infer, JSON input (binary_data=False)", [data_input(x, binary=False)])
    ok("infer, JSON input: output matches")
    infer("infer, binary outputs requested",
          [data_input(x)], [httpclient.InferRequestedOutput(n, binary_data=True) for n in outputs],
          want_form="binary")
    ok("infer, binary outputs requested: binary, matches")
    infer("infer, JSON outputs requested",
          [data_input(x)], [httpclient.InferRequestedOutput(n, binary_data=False) for n in outputs],
          want_form="json")
    ok("infer, JSON outputs requested: JSON, matches")
    infer("infer, JSON input and JSON outputs",
          [data_input(x, binary=False)],
          [httpclient.InferRequestedOutput(n, binary_data=False) for n in outputs],
          want_form="json")
    ok("infer, JSON input and JSON outputs: matches")

    first = outputs[0]
    with check("infer, requested-output subset"):
        saved = out_name
        result = client.infer(model, [data_input(x)],
                              outputs=[httpclient.InferRequestedOutput(first)],
                              headers=auth(token))
        names = [o.get("name") for o in result.get_response().get("outputs") or []]
        if names != [first]:
            fail(f"infer, requested-output subset [{first!r}]: response outputs {names!r}")
        if first == saved:
            compare("infer, requested-output subset", result.as_numpy(first), expected)
        ok(f"infer, requested-output subset [{first!r}]: only that output returned"
           + (", matches" if first == saved else ""))

    with check("infer, request_id echo"):
        rid = "ward-tritonclient-42"
        result = infer("infer, request_id", [data_input(x)], request_id=rid)
        got = result.get_response().get("id")
        if got != rid:
            fail(f"infer, request_id {rid!r}: response id {got!r}")
        ok(f"infer, request_id {rid!r} echoed")

    infer("infer, gzip request and response",
          [data_input(x)], request_compression_algorithm="gzip",
          response_compression_algorithm="gzip")
    ok("infer, gzip request body + Accept-Encoding: gzip: matches "
       f"(response Content-Encoding: {client.last_content_encoding})")
    infer("infer, gzip request, JSON input",
          [data_input(x, binary=False)], request_compression_algorithm="gzip")
    ok("infer, gzip request body with JSON input: matches")

    # --- errors
    wrong = [bad, "", None]
    for t in wrong:
        label = "no Authorization header" if t is None else (
            "empty bearer token" if t == "" else "wrong token")
        hdrs = (lambda: None) if t is None else (lambda t=t: auth(t))
        expect_status(f"{label}: get_server_metadata()", 401,
                      client.get_server_metadata, headers=hdrs())
        expect_status(f"{label}: get_model_metadata({model!r})", 401,
                      client.get_model_metadata, model, headers=hdrs())
        expect_status(f"{label}: infer", 401,
                      client.infer, model, [data_input(x)], headers=hdrs())
        with check(f"{label}: is_server_live()"):
            if client.is_server_live(headers=hdrs()) is not False:
                fail(f"{label}: is_server_live() is True without a valid token")
            ok(f"{label}: is_server_live() is False")
    expect_status("wrong token, unknown model: infer (401 before 404)", 401,
                  client.infer, "nope", [data_input(x)], headers=auth(bad))

    expect_status("unknown model: infer", 404,
                  client.infer, "nope", [data_input(x)], headers=auth(token))
    expect_status("unknown model: get_model_metadata", 404,
                  client.get_model_metadata, "nope", headers=auth(token))
    expect_status("unknown version: get_model_metadata(model, '2')", 404,
                  client.get_model_metadata, model, "2", headers=auth(token))
    expect_status("wrong shape (last dim one short)", 400,
                  client.infer, model, [data_input(np.ascontiguousarray(x[:, :-1]))],
                  headers=auth(token))
    expect_status("wrong shape, JSON input", 400,
                  client.infer, model, [data_input(np.ascontiguousarray(x[:, :-1]), binary=False)],
                  headers=auth(token))
    expect_status("wrong datatype (FP64 input)", 400,
                  client.infer, model, [data_input(x.astype(np.float64), datatype="FP64")],
                  headers=auth(token))
    expect_status("unknown input name", 400,
                  client.infer, model, [data_input(x, name="nope")], headers=auth(token))

    infer("infer after the errors (same keep-alive client)", [data_input(x)])
    ok("infer after the errors: the connection is still usable, matches")
    client.close()


async def run_aio(args, x, expected):
    url, token, model = args.url, args.token, args.model
    ctx = ssl.create_default_context(cafile=args.ca)
    input_shape = [-1] + list(x.shape[1:])
    async with aioclient.InferenceServerClient(url, ssl=True, ssl_context=ctx) as client:
        with check("aio readiness"):
            for what, call, want in [
                ("aio is_server_live()", lambda: client.is_server_live(headers=auth(token)), True),
                ("aio is_server_ready()", lambda: client.is_server_ready(headers=auth(token)), True),
                (f"aio is_model_ready({model!r})",
                 lambda: client.is_model_ready(model, headers=auth(token)), True),
                (f"aio is_model_ready({model!r}, '1')",
                 lambda: client.is_model_ready(model, "1", headers=auth(token)), True),
                ("aio is_model_ready('nope')",
                 lambda: client.is_model_ready("nope", headers=auth(token)), False),
            ]:
                value = await call()
                if value is not want:
                    fail(f"{what} returned {value!r}, expected {want!r}")
                ok(f"{what} is {want}")

        with check("aio get_server_metadata()"):
            meta = await client.get_server_metadata(headers=auth(token))
            if "binary_tensor_data" not in (meta.get("extensions") or []):
                fail(f"aio get_server_metadata(): no 'binary_tensor_data' in {meta!r}")
            ok(f"aio get_server_metadata(): name {meta.get('name')!r}")
        # aiohttp always sends Accept-Encoding: gzip, deflate, br, and this client does not
        # decompress metadata: a server compressing it breaks the call (UnicodeDecodeError).
        with check(f"aio get_model_metadata({model!r})"):
            meta = await client.get_model_metadata(model, headers=auth(token))
            outputs = check_model_metadata(f"aio get_model_metadata({model!r})", meta, model,
                                           input_shape)
            ok(f"aio get_model_metadata({model!r}): outputs {outputs}")
        with check(f"aio get_model_metadata({model!r}, '1')"):
            meta = await client.get_model_metadata(model, "1", headers=auth(token))
            check_model_metadata(f"aio get_model_metadata({model!r}, '1')", meta, model,
                                 input_shape, outputs_expected=outputs)
            ok(f"aio get_model_metadata({model!r}, '1'): same")

        stem = pathlib.Path(args.expected_npy).stem
        out_name = stem if stem in outputs else outputs[0]
        # aiohttp sends Content-Type: application/octet-stream on every POST, JSON or not.
        for what, binary in [("aio infer, binary input", True), ("aio infer, JSON input", False)]:
            with check(what):
                result = await client.infer(model, [data_input(x, binary=binary)],
                                            headers=auth(token), request_id="aio-1")
                resp = result.get_response()
                if resp.get("id") != "aio-1":
                    fail(f"{what}: response id {resp.get('id')!r}, expected 'aio-1'")
                form = output_form(result, out_name)
                if form != "binary":
                    fail(f"{what}: output came as {form}, expected binary")
                compare(what, result.as_numpy(out_name), expected)
                ok(f"{what}: matches")

        with check("aio infer, wrong token"):
            try:
                await client.infer(model, [data_input(x)], headers=auth(args.bad_token))
            except InferenceServerException as e:
                if str(e.status()) != "401":
                    fail(f"aio infer, wrong token: status {e.status()}, expected 401 "
                         f"({e.message()!r})")
                ok("aio infer, wrong token: 401")
            else:
                fail("aio infer, wrong token: succeeded")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="HOST:PORT (no scheme)")
    p.add_argument("--ca", required=True, help="PEM file of the CA that signed the server cert")
    p.add_argument("--token", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--input-npy", required=True, help="the value of input 'data'")
    p.add_argument("--expected-npy", required=True, help="the expected output (ward predict)")
    p.add_argument("--bad-token", default=None, help="a token the server must refuse")
    args = p.parse_args()
    if args.url.startswith(("http://", "https://")):
        p.error("--url takes HOST:PORT without a scheme")
    if args.bad_token is None:
        args.bad_token = args.token[:-1] + ("A" if args.token[-1:] != "A" else "B")
    if args.bad_token == args.token:
        p.error("--bad-token must differ from --token")

    x = np.load(args.input_npy)
    expected = np.load(args.expected_npy)
    if x.dtype != np.float32:
        sys.exit(f"FAIL: {args.input_npy} is {x.dtype}, expected float32")
    print(f"tritonclient {importlib.metadata.version('tritonclient')} against https://{args.url}, model {args.model!r}, "
          f"input {x.shape} {x.dtype}, expected {expected.shape} {expected.dtype}", flush=True)

    try:
        run_sync(args, x, expected)
        asyncio.run(run_aio(args, x, expected))
    except CheckFailed as e:
        print(f"FAIL: {e}", flush=True)
        sys.exit(1)
    print("tritonclient: all checks passed", flush=True)


if __name__ == "__main__":
    main()
