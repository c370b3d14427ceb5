#!/bin/sh
# docker-compose.yml's one-shot `minio-init` (image minio/mc): creates the images bucket
# and a MinIO user for storage-service (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in
# .env) whose policy allows that bucket and nothing else. Safe to run on every start.
set -eu

mc alias set vitrine "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "vitrine/$MINIO_BUCKET"

cat >/tmp/vitrine-storage-policy.json <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::$MINIO_BUCKET"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                 "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::$MINIO_BUCKET/*"]
    }
  ]
}
JSON
mc admin policy create vitrine vitrine-storage /tmp/vitrine-storage-policy.json
mc admin user add vitrine "$STORAGE_S3_ACCESS_KEY" "$STORAGE_S3_SECRET_KEY"
# Attaching a policy the user already has is an error: attach only when missing.
if ! mc admin user info vitrine "$STORAGE_S3_ACCESS_KEY" | grep -q 'vitrine-storage'; then
    mc admin policy attach vitrine vitrine-storage --user "$STORAGE_S3_ACCESS_KEY"
fi
echo "vitrine: bucket $MINIO_BUCKET and its storage user are ready"
