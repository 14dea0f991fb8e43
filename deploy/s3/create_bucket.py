"""One-shot: create the artifact bucket on the S3 store (MinIO or SeaweedFS), then exit.

Reads S3_ENDPOINT_URL, S3_BUCKET, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
Idempotent: an existing bucket is fine. Retries for up to 2 minutes while the
store starts; exits 1 with the last error if it never answers.
"""

import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

DEADLINE_SECONDS = 120


def main() -> int:
    """Create the bucket if it is missing; 0 on success, 1 when the store never answered."""
    endpoint, bucket = os.environ["S3_ENDPOINT_URL"], os.environ["S3_BUCKET"]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10),
    )
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        try:
            existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            if bucket not in existing:
                s3.create_bucket(Bucket=bucket)
                sys.stdout.write(f"created bucket {bucket!r} on {endpoint}\n")
            else:
                sys.stdout.write(f"bucket {bucket!r} exists on {endpoint}\n")
            return 0
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() > deadline:
                sys.stderr.write(f"cannot create bucket {bucket!r} on {endpoint}: {exc}\n")
                return 1
            time.sleep(2)


if __name__ == "__main__":
    raise SystemExit(main())
