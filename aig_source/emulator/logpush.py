"""An emulated Cloudflare Logpush job for the AI Gateway dataset (`ai_gateway_events`).

It writes what Cloudflare documents (see `logpush.md` in the reference notes): daily `YYYYMMDD`
folders of gzipped NDJSON batches named as observed (`<start>Z_<end>Z_<hex>.log.gz`), the
documented fields, `Metadata`/`RequestBody`/`ResponseBody` encrypted to an RSA-4096 public key
(a fresh AES-256-GCM key per field, wrapped with RSA-OAEP SHA-256; or the 2024 RSA-only form;
or plain), `Timestamp` in any `timestamp_format`, and the oddities a loader must survive: the
`test.txt.gz` probe, ownership-challenge files, a batch delivered twice, a late batch in an
older folder, a `.log.gz` file that is not gzipped, truncated and broken files.

The bucket is any fsspec filesystem: a local folder, or S3 (moto on loopback in the tests).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gzip
import json
import logging
import os
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Dict, Iterator, List, Optional, Sequence

import fsspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fsspec.implementations.local import LocalFileSystem

from ..logpush.decrypt import OAEP_SHA256
from .traffic import TrafficProfile, synthetic_log

ENVELOPE = "envelope"
"""Today's scheme: AES-256-GCM data, its key wrapped with RSA-OAEP SHA-256."""
RSA_ONLY = "rsa"
"""The 2024 scheme: the field's text encrypted with RSA-OAEP directly (short values only)."""
PLAIN = "plain"
"""No encryption (no public key on the gateway, or a field Cloudflare emitted in the clear)."""

DATASET_FIELDS: Dict[str, str] = {
    "Cached": "Whether the response was served from the gateway cache.",
    "Endpoint": "The endpoint that was requested.",
    "Gateway": "The gateway that produced the log.",
    "Metadata": "User-defined metadata attached to the request (encrypted).",
    "Metrics": "Cost and usage metrics that do not depend on the provider.",
    "Model": "The model that served the request.",
    "Provider": "The provider requested.",
    "RateLimited": "Whether the request was rate limited.",
    "RequestBody": "The encrypted request body.",
    "RequestedModel": "The model the caller asked for.",
    "ResponseBody": "The encrypted response body.",
    "RoutingDecisionID": "The smart-routing decision id, empty without a decision.",
    "RoutingReason": "Why smart routing chose the model, empty without a decision.",
    "StatusCode": "The HTTP status code of the response.",
    "Timestamp": "The time the request was received.",
}
"""`GET .../logpush/datasets/ai_gateway_events/fields` as the emulated API answers it: the
documented fields (descriptions paraphrased)."""

_ROUTING_REASONS = ("lowest cost for the prompt size", "primary model unavailable")


@dataclass(frozen=True)
class KeyPair:
    """An RSA key pair as the docs make it: public `spki` PEM, private `pkcs8` PEM."""

    private_pem: str
    public_pem: str

    @staticmethod
    def generate(bits: int = 4096) -> KeyPair:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return KeyPair(private.decode(), public.decode())


@functools.cache
def shared_key_pair(bits: int = 4096) -> KeyPair:
    """One key pair per process: an RSA-4096 key takes a second or more to generate."""
    return KeyPair.generate(bits)


class FieldEncryptor:
    """Encrypts a field as Cloudflare does, to one public key."""

    def __init__(self, public_pem: Optional[str], scheme: str = ENVELOPE) -> None:
        self.scheme = scheme
        self._public = (
            serialization.load_pem_public_key(public_pem.encode())
            if public_pem and scheme != PLAIN
            else None
        )

    def encrypt(self, text: str) -> Any:
        if self.scheme == PLAIN:
            return text
        data = text.encode()
        if self.scheme == RSA_ONLY:
            wrapped = self._public.encrypt(data, OAEP_SHA256)  # type: ignore[union-attr]
            return {"type": "encrypted", "data": _b64(wrapped)}
        aes_key, iv = os.urandom(32), os.urandom(12)
        return {
            "type": "encrypted",
            "key": _b64(self._public.encrypt(aes_key, OAEP_SHA256)),  # type: ignore[union-attr]
            "iv": _b64(iv),
            "data": _b64(AESGCM(aes_key).encrypt(iv, data, None)),
        }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def format_timestamp(moment: datetime, timestamp_format: str) -> Any:
    """`Timestamp` as a Logpush job with `output_options.timestamp_format` writes it."""
    moment = moment.astimezone(timezone.utc)
    whole = moment.strftime("%Y-%m-%dT%H:%M:%S")
    epoch_us = round((moment - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds() * 1e6)
    if timestamp_format == "unixnano":
        return epoch_us * 1000 + 123  # the files' nanoseconds; microseconds are what is kept
    if timestamp_format == "unix":
        return epoch_us // 1_000_000
    if timestamp_format == "rfc3339":
        return whole + "Z"
    if timestamp_format == "rfc3339ms":
        return f"{whole}.{moment.microsecond // 1000:03d}Z"
    if timestamp_format == "rfc3339ns":
        return f"{whole}.{moment.microsecond:06d}123Z"
    raise ValueError(f"unknown timestamp_format {timestamp_format!r}")


@dataclass
class PushedLog:
    """One log as the gateway saw it (the truth a test compares rows with)."""

    gateway: str
    created_at: datetime
    metadata: Optional[Dict[str, Any]]
    record: Dict[str, Any]
    """The record as written into the file (encrypted fields encrypted)."""


@dataclass
class PushedFile:
    key: str
    logs: List[PushedLog]
    raw: bytes


@dataclass
class LogpushBucket:
    """A Logpush destination: an fsspec filesystem and the job's path in it."""

    fs: Any
    root: str
    files: List[PushedFile] = field(default_factory=list)

    @staticmethod
    def local(folder: str) -> LogpushBucket:
        os.makedirs(folder, exist_ok=True)
        return LogpushBucket(fsspec.filesystem("file"), os.path.abspath(folder))

    def put(self, key: str, raw: bytes) -> None:
        path = f"{self.root.rstrip('/')}/{key}"
        parent = path.rsplit("/", 1)[0]
        if isinstance(self.fs, LocalFileSystem):
            self.fs.makedirs(parent, exist_ok=True)
        with self.fs.open(path, "wb") as handle:
            handle.write(raw)

    @property
    def logs(self) -> List[PushedLog]:
        """Every log pushed once (a batch delivered twice counts once)."""
        seen, logs = set(), []
        for pushed in self.files:
            for log in pushed.logs:
                if id(log) not in seen:
                    seen.add(id(log))
                    logs.append(log)
        return logs


class LogpushJob:
    """Writes batches of synthetic AI Gateway logs into a bucket, as a Logpush job would.

    Args:
        bucket: Where to write.
        public_pem: The key the gateway encrypts to (ignored with `scheme=PLAIN`).
        scheme: `ENVELOPE` (today), `RSA_ONLY` (2024) or `PLAIN`.
        timestamp_format: The job's `output_options.timestamp_format`.
        load_bodies: Whether the job's `field_names` include the bodies.
        seed: Makes the traffic reproducible.
        profile: Rates of errors, cache hits, metadata and so on.
    """

    def __init__(
        self,
        bucket: LogpushBucket,
        public_pem: Optional[str],
        scheme: str = ENVELOPE,
        timestamp_format: str = "unixnano",
        with_bodies: bool = True,
        seed: int = 0,
        profile: Optional[TrafficProfile] = None,
    ) -> None:
        self.bucket = bucket
        self.encryptor = FieldEncryptor(public_pem, scheme)
        self.timestamp_format = timestamp_format
        self.with_bodies = with_bodies
        self.rng = random.Random(seed)
        self.profile = profile

    def push_days(
        self,
        gateways: Sequence[str],
        first_day: date,
        days: int,
        files_per_day: int,
        records_per_file: int,
    ) -> List[PushedFile]:
        """`files_per_day` batches a day for `days` days from `first_day`, each holding
        `records_per_file` logs of the gateways taken in turn (one job exports every gateway of
        the account into the same files)."""
        pushed = []
        for day_index in range(days):
            day = first_day + timedelta(days=day_index)
            span = 86400 / files_per_day
            for number in range(files_per_day):
                start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(
                    seconds=span * number
                )
                pushed.append(self.push_batch(gateways, start, span, records_per_file))
        return pushed

    def push_batch(
        self,
        gateways: Sequence[str],
        start: datetime,
        span_seconds: float,
        records: int,
        folder_day: Optional[date] = None,
        gzipped: bool = True,
    ) -> PushedFile:
        """One batch of `records` logs created in `[start, start + span)`."""
        logs = [
            self.make_log(
                gateways[n % len(gateways)],
                start + timedelta(seconds=self.rng.random() * span_seconds),
            )
            for n in range(records)
        ]
        logs.sort(key=lambda log: log.created_at)
        body = b"".join(json.dumps(log.record).encode() + b"\n" for log in logs)
        raw = gzip.compress(body, compresslevel=6) if gzipped else body
        return self.write(self.batch_key(start, span_seconds, folder_day), logs, raw)

    def batch_key(
        self, start: datetime, span_seconds: float, folder_day: Optional[date] = None
    ) -> str:
        end = start + timedelta(seconds=span_seconds)
        folder = (folder_day or start.date()).strftime("%Y%m%d")
        stamp = "%Y%m%dT%H%M%SZ"
        return f"{folder}/{start:{stamp}}_{end:{stamp}}_{self.rng.getrandbits(32):08x}.log.gz"

    def write(self, key: str, logs: List[PushedLog], raw: bytes) -> PushedFile:
        self.bucket.put(key, raw)
        pushed = PushedFile(key, logs, raw)
        self.bucket.files.append(pushed)
        return pushed

    def redeliver(self, pushed: PushedFile) -> PushedFile:
        """The same batch again, byte for byte, under a new name (at-least-once delivery)."""
        key = pushed.key.rsplit("_", 1)[0] + f"_{self.rng.getrandbits(32):08x}.log.gz"
        return self.write(key, pushed.logs, pushed.raw)

    def push_probe_files(self) -> List[str]:
        """What is not a log: the destination test file and an ownership challenge."""
        probe = gzip.compress(json.dumps({"content": "tests"}).encode())
        self.bucket.put("test.txt.gz", probe)
        challenge = f"ownership-challenge-{self.rng.getrandbits(32):08x}.txt"
        self.bucket.put(challenge, b"0123456789abcdef0123456789abcdef")
        return ["test.txt.gz", challenge]

    def make_log(self, gateway: str, created_at: datetime) -> PushedLog:
        created_ms = int(created_at.timestamp() * 1000)
        log = synthetic_log(created_ms, self.rng, self.profile)
        fields = log.fields
        metadata = json.loads(fields["metadata"]) if "metadata" in fields else None
        routed = self.rng.random() < 0.1
        status = int(fields["status_code"])
        record: Dict[str, Any] = {
            "Cached": fields["cached"],
            "Endpoint": fields["path"],
            "Gateway": gateway,
            "Metadata": None if metadata is None else self.encryptor.encrypt(json.dumps(metadata)),
            "Metrics": {"cost": fields["cost"], "durationMs": fields["duration"]},
            "Model": fields["model"],
            "Provider": fields["provider"],
            "RateLimited": status == 429,
            "RequestedModel": "cloudflare/auto" if routed else fields["model"],
            "RoutingDecisionID": f"rd_{self.rng.getrandbits(48):012x}" if routed else "",
            "RoutingReason": self.rng.choice(_ROUTING_REASONS) if routed else "",
            "StatusCode": status,
            "Timestamp": format_timestamp(created_at, self.timestamp_format),
        }
        if self.with_bodies:
            record["RequestBody"] = self.encryptor.encrypt(json.dumps(log.request_body))
            record["ResponseBody"] = (
                None
                if log.response_body is None
                else self.encryptor.encrypt(json.dumps(log.response_body))
            )
        return PushedLog(
            gateway, _kept_precision(created_at, self.timestamp_format), metadata, record
        )


def _kept_precision(moment: datetime, timestamp_format: str) -> datetime:
    """The time a loader can read back from `Timestamp` in that format."""
    if timestamp_format in ("unix", "rfc3339"):
        return moment.replace(microsecond=0)
    if timestamp_format == "rfc3339ms":
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    return moment


@dataclass
class S3Endpoint:
    """An S3 server on loopback (moto), one bucket in it, and what a client needs to reach it."""

    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str

    def filesystem(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(
            key=self.access_key_id,
            secret=self.secret_access_key,
            client_kwargs={"endpoint_url": self.endpoint_url, "region_name": self.region},
            skip_instance_cache=True,
            use_listings_cache=False,
        )

    def logpush_bucket(self, path: str = "logs") -> LogpushBucket:
        return LogpushBucket(self.filesystem(), f"{self.bucket}/{path}")

    def credentials(self) -> Dict[str, str]:
        """dlt's `AwsCredentials` fields, as `[sources.aig_logpush.credentials]` holds them."""
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
        }


@contextlib.contextmanager
def s3_on_loopback(bucket: str = "aig-logpush") -> Iterator[S3Endpoint]:
    """moto's S3 server (the real S3 protocol) on 127.0.0.1 and an ephemeral port, with an empty
    `bucket`; stopped on exit. Needs the `moto[server]` and `s3fs` packages (dev extras)."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = S3Endpoint(f"http://{host}:{port}", bucket, "testing", "testing", "us-east-1")
        boto3.client(
            "s3",
            endpoint_url=endpoint.endpoint_url,
            aws_access_key_id=endpoint.access_key_id,
            aws_secret_access_key=endpoint.secret_access_key,
            region_name=endpoint.region,
        ).create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()
