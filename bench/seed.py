"""Seeds a session of N connections into the connections table and sends one
message to the inbound queue (bench/fanout.sh runs it with moto's venv, which has boto3)."""
import json
import sys
import time

import boto3

endpoint, table, queue_url, session, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench")
ddb = boto3.client("dynamodb", **kw)
sqs = boto3.client("sqs", **kw)

now = int(time.time())
items = []
for i in range(n):
    items.append({"PutRequest": {"Item": {
        "connectionId": {"S": f"bench-{i:06d}-AAAAAAAAAAA="},
        "sessionId": {"S": session},
        "userId": {"S": f"user-{i % 1000}"},
        "connectedAt": {"N": str(now * 1000 + i)},
        "expiresAt": {"N": str(now + 3 * 3600)},
        "domainName": {"S": "127.0.0.1"},
        "stage": {"S": "bench"},
        "sourceIp": {"S": "127.0.0.1"},
    }}})
for start in range(0, n, 25):  # BatchWriteItem takes at most 25 items
    batch = items[start:start + 25]
    while batch:
        out = ddb.batch_write_item(RequestItems={table: batch})
        batch = out.get("UnprocessedItems", {}).get(table, [])

body = {
    "v": 1, "id": "bench-message-1", "action": "sendMessage", "sessionId": session,
    "sender": {"connectionId": "bench-000000-AAAAAAAAAAA=", "userId": "user-0"},
    "receivedAt": int(time.time() * 1000),
    "payload": {"text": "x" * 200},
}
sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body), MessageGroupId=session,
                 MessageDeduplicationId="bench-message-1")
print(f"seeded {n} connections in {session}", file=sys.stderr)
