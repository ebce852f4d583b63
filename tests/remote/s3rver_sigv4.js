// s3rver behind a SigV4 check. s3rver 3.x parses a SigV4 Authorization header
// and knows the access key id, but never checks the signature ("Signature
// version 4 calculation is unimplemented" in its authentication middleware),
// so a wrong secret would pass. This wrapper verifies every request's header
// signature (AWS4-HMAC-SHA256, secret S3RVER) before s3rver sees it, and logs
// "METHOD PATH STATUS BODY_BYTES" per response for the tests to count bytes.
//
//   node s3rver_sigv4.js S3RVER_MODULE_DIR DATA_DIR PORT BUCKET LOG_FILE
'use strict';
const [moduleDir, dataDir, port, bucket, logFile] = process.argv.slice(2);
const S3rver = require(moduleDir);
const http = require('http');
const crypto = require('crypto');
const fs = require('fs');

const ACCESS_KEY = 'S3RVER';
const SECRET = 'S3RVER';

const hmac = (key, data) => crypto.createHmac('sha256', key).update(data).digest();
const sha256 = data => crypto.createHash('sha256').update(data).digest('hex');

// Returns null when the request is signed with ACCESS_KEY/SECRET, else an S3 error code.
function check(req) {
  const auth = req.headers['authorization'] || '';
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return 'AccessDenied';
  const [, accessKey, date, region, signedHeaders, signature] = m;
  if (accessKey !== ACCESS_KEY) return 'InvalidAccessKeyId';
  const amzDate = req.headers['x-amz-date'];
  const payloadHash = req.headers['x-amz-content-sha256'];
  if (!amzDate || !payloadHash || !signedHeaders.split(';').includes('host')) return 'AccessDenied';
  const url = new URL(req.url, 'http://x');
  const query = [...url.searchParams.entries()]
    .map(([k, v]) => [encodeURIComponent(k), encodeURIComponent(v)])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const headers = signedHeaders
    .split(';')
    .map(h => `${h}:${String(req.headers[h] ?? '').trim().replace(/\s+/g, ' ')}\n`)
    .join('');
  const canonical = [req.method, url.pathname, query, headers, signedHeaders, payloadHash].join('\n');
  const scope = `${date}/${region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  const key = hmac(hmac(hmac(hmac('AWS4' + SECRET, date), region), 's3'), 'aws4_request');
  const expected = hmac(key, toSign).toString('hex');
  return expected === signature ? null : 'SignatureDoesNotMatch';
}

(async () => {
  const s3 = new S3rver({ directory: dataDir, silent: true, configureBuckets: [{ name: bucket, configs: [] }] });
  await s3.configureBuckets();
  const handler = s3.callback();
  const server = http.createServer((req, res) => {
    let sent = 0;
    const write = res.write.bind(res);
    const end = res.end.bind(res);
    res.write = (chunk, ...rest) => {
      if (chunk && typeof chunk !== 'function') sent += Buffer.byteLength(chunk);
      return write(chunk, ...rest);
    };
    res.end = (chunk, ...rest) => {
      if (chunk && typeof chunk !== 'function') sent += Buffer.byteLength(chunk);
      return end(chunk, ...rest);
    };
    // Synchronously: the line must be there when the client has its answer.
    res.on('finish', () => fs.appendFileSync(logFile, `${req.method} ${req.url} ${res.statusCode} ${sent}\n`));
    const err = check(req);
    if (err) {
      res.statusCode = 403;
      res.setHeader('Content-Type', 'application/xml');
      res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${err}</Code><Message>denied by the SigV4 check</Message></Error>`);
      req.resume();
      return;
    }
    handler(req, res);
  });
  server.listen(Number(port), '127.0.0.1', () => console.log(`listening on ${server.address().port}`));
})().catch(e => {
  console.error(e);
  process.exit(1);
});
