#!/usr/bin/env node
// postman/build.mjs — writes Vitrine's Postman collection and environment from this file.
//
//   node postman/build.mjs           write vitrine.postman_collection.json and
//                                    vitrine.postman_environment.json next to this file
//   node postman/build.mjs --check   exit 1 if the committed files differ from what this
//                                    file makes (e2e/postman.rs runs it in CI)
//
// Edit the collection here, not in the JSON: each request's test script is written out
// in full into the JSON (so it reads plainly in Postman), from the helpers below. The
// image uploaded by the collection is fixtures/swatch.png; its bytes are also embedded
// (base64) as the collection variable `png_base64`, from which the pre-request scripts
// compute the size and SHA-256 (Postman's sandbox cannot read files; it has crypto-js).
//
// Every status and error code below is what the services answer: see
// docs/openapi/*.json and the services' error enums.

import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const COLLECTION_FILE = 'vitrine.postman_collection.json';
const ENVIRONMENT_FILE = 'vitrine.postman_environment.json';
const FIXTURE = 'fixtures/swatch.png';

// ----------------------------------------------------------------- the environment

/// Defaults: the embedded stack (`cargo run --release -- up --demo`) on its default ports
/// (.env.example) and the demo folder it prints (fixed seed: the same URLs every run).
const ENVIRONMENT = [
    ['app_url', 'http://127.0.0.1:8081', 'App Service (APP_BIND)'],
    ['storage_url', 'http://127.0.0.1:8082', 'Storage Service (STORAGE_BIND); upload URLs must point here'],
    ['import_url', 'http://127.0.0.1:8083', 'Import API (IMPORT_BIND)'],
    ['demo_providers_url', 'http://127.0.0.1:9900', 'Drive/Dropbox emulator of `up --demo` (DEMO_PROVIDERS_BIND); empty against the real providers'],
    ['demo_drive_folder_url', 'https://drive.google.com/drive/folders/1laxsYKFNPs6YYcmSUkQ9T5ggcU85BmYx?usp=sharing', 'Google Drive folder to import ("Demo folder" in the `up --demo` banner)'],
    ['demo_dropbox_url', 'https://www.dropbox.com/scl/fo/vyhlt008tzi4c3t0tp2pz/h?rlkey=lhdd32n29lcox1yzje7bkeq33&dl=0', 'Dropbox folder to import ("Demo Dropbox link"); empty skips the Dropbox import'],
    ['expect_demo_counts', 'true', 'true: assert the demo folder\'s exact counts (src/demo.rs); false for a folder of your own'],
    ['seller_prefix', 'postman', 'Sellers are <prefix>-a-<time> and <prefix>-b-<time>: fresh ones every run'],
    ['jwt_secret', '', 'JWT_HS256_SECRET from <data dir>/keys.env: signs the expired and wrong-audience tokens; empty skips those two requests', 'secret'],
    ['poll_interval_ms', '500', 'Pause between two polls of an import'],
    ['poll_max_tries', '240', 'Polls before an import counts as stuck'],
];

// ----------------------------------------------------------------- script helpers

const lines = (text) => text.replace(/^\n/, '').replace(/\s+$/, '').split('\n');
const js = (value) => JSON.stringify(value);

/// `pm.test` asserting the status.
const status = (code) => `pm.test('status is ${code}', () => pm.response.to.have.status(${code}));`;

/// The error envelope with this status and stable code (the collection-level test
/// checks the envelope's shape on every 4xx/5xx).
const error = (code, slug) => `${status(code)}
pm.test('error code is ${slug}', () => pm.expect(pm.response.json().error.code).to.eql('${slug}'));`;

/// A 401 also carries a Bearer challenge.
const unauthorized = (slug) => `${error(401, slug)}
pm.test('WWW-Authenticate is a Bearer challenge', () => pm.expect(pm.response.headers.get('WWW-Authenticate')).to.match(/^Bearer/));`;

/// The JSON body has at least these keys.
const keys = (what, names, expr = 'pm.response.json()') =>
    `pm.test('${what} has ${names.join(', ')}', () => pm.expect(${expr}).to.include.all.keys(${names.map(js).join(', ')}));`;

const PRODUCT_KEYS = ['id', 'seller_id', 'name', 'description', 'price_minor', 'currency', 'image_id', 'created_at'];
const IMAGE_KEYS = ['image_id', 'name', 'source', 'source_id', 'size', 'mime_type', 'width', 'height', 'sha256', 'storage_path', 'import_id', 'imported_at', 'url'];
const JOB_KEYS = ['id', 'provider', 'folder_url', 'state', 'counts', 'pages', 'created_at', 'updated_at'];
const ITEM_KEYS = ['id', 'source_id', 'name', 'path', 'status', 'attempts', 'updated_at'];

/// Sets the request's headers from a stored upload ticket's `headers`.
const ticketHeaders = (name) => `const headers = JSON.parse(pm.collectionVariables.get('${name}_headers') || '{}');
Object.entries(headers).forEach(([key, value]) => pm.request.headers.upsert({ key, value }));`;

/// Stores an upload ticket (`POST /uploads` answer) under `name`.
const storeTicket = (name) => `${status(201)}
const ticket = pm.response.json();
${keys('the ticket', ['upload_id', 'upload_url', 'method', 'headers', 'expires_at'], 'ticket')}
pm.test('the upload URL points at storage', () => pm.expect(ticket.upload_url.startsWith(pm.variables.get('storage_url') + '/uploads/' + ticket.upload_id + '?')).to.be.true);
pm.test('the method is PUT', () => pm.expect(ticket.method).to.eql('PUT'));
pm.collectionVariables.set('${name}_upload_id', ticket.upload_id);
pm.collectionVariables.set('${name}_upload_url', ticket.upload_url);
pm.collectionVariables.set('${name}_headers', JSON.stringify(ticket.headers));`;

/// The SHA-256 of the response body equals the variable `variable`.
const bodyHash = (variable) => `const cryptoJs = require('crypto-js');
pm.test('the bytes are the image (SHA-256)', () => {
    const bytes = cryptoJs.lib.WordArray.create(pm.response.stream);
    pm.expect(cryptoJs.SHA256(bytes).toString(cryptoJs.enc.Hex)).to.eql(pm.collectionVariables.get('${variable}'));
});`;

/// Skips the request (before it is sent) when `condition` holds; newman and Postman
/// then run the next one.
const skipWhen = (condition, why) => `if (${condition}) {
    console.log('skipped: ${why}');
    pm.execution.skipRequest();
}`;

/// Follows the request chain to `name` (collection runs: Postman's runner, newman).
const NEXT_REQUEST = 'pm.execution.setNextRequest';

// ----------------------------------------------------------------- request builders

const bearer = (token) => ({ type: 'bearer', bearer: [{ key: 'token', value: `{{${token}}}`, type: 'string' }] });
const NO_AUTH = { type: 'noauth' };
const JSON_HEADER = { key: 'Content-Type', value: 'application/json' };

/// One request. `body`: an object (sent as JSON), `{ raw, type }`, or `{ file }`.
function request(name, { method = 'GET', url, auth = NO_AUTH, headers = [], body, pre, test, description }) {
    const item = { name, request: { method, header: [...headers], url, auth } };
    if (description) item.request.description = description;
    if (body && body.file) {
        item.request.body = { mode: 'file', file: { src: body.file } };
    } else if (body && body.raw !== undefined) {
        item.request.header.push({ key: 'Content-Type', value: body.type });
        item.request.body = { mode: 'raw', raw: body.raw };
    } else if (body !== undefined) {
        item.request.header.push(JSON_HEADER);
        const raw = typeof body === 'string' ? body : JSON.stringify(body, null, 2);
        item.request.body = { mode: 'raw', raw, options: { raw: { language: 'json' } } };
    }
    item.event = [];
    if (pre) item.event.push({ listen: 'prerequest', script: { type: 'text/javascript', exec: lines(pre) } });
    if (test) item.event.push({ listen: 'test', script: { type: 'text/javascript', exec: lines(test) } });
    return item;
}

const folder = (name, description, item, pre) => {
    const group = { name, description, item };
    if (pre) group.event = [{ listen: 'prerequest', script: { type: 'text/javascript', exec: lines(pre) } }];
    return group;
};

/// A refused `PUT` to storage. `body`: 'file' (the image), 'empty', or 'early' for a
/// request that storage refuses before it reads the body (URL token, used URL, Content-Type
/// header): it gets a short text body instead of the file, because when the answer comes
/// before the file is streamed, newman's HTTP client never finishes the request, and the
/// open connection keeps `newman run` from exiting after the run.
const put = (what, url, code, slug, { body = 'file', headersOf, pre = '', description } = {}) =>
    request(`${what} (${code} ${slug})`, {
        method: 'PUT',
        url,
        body: {
            file: { file: FIXTURE },
            empty: { raw: '', type: 'image/png' },
            early: { raw: 'refused before the body is read', type: 'image/png' },
        }[body],
        pre: `${headersOf ? ticketHeaders(headersOf) : ''}\n${pre}`.trim() || undefined,
        test: error(code, slug),
        description: [description, body === 'early' ? 'Storage refuses this before reading the body, so the body is a short text (the answer would be the same for the image).' : '']
            .filter(Boolean).join(' ') || undefined,
    });

// ----------------------------------------------------------------- 0. setup

const ready = (service, variable) =>
    request(`${service} is ready`, {
        url: `{{${variable}}}/readyz`,
        test: status(200),
        description: `\`GET /readyz\`: ${service} and its dependencies answer.`,
    });

/// Seller tokens from the dev issuer. Seller A's token is also the template for the
/// bad tokens of "4. Rejections: tokens".
const sellerToken = (letter, extra = '') =>
    request(`Seller ${letter.toUpperCase()}: token (dev issuer)`, {
        method: 'POST',
        url: '{{app_url}}/auth/token',
        body: `{ "seller_id": "{{seller_${letter}}}" }`,
        pre: `pm.collectionVariables.set('seller_${letter}', pm.variables.get('seller_prefix') + '-${letter}-' + Date.now().toString(36));`,
        test: `${status(201)}
const body = pm.response.json();
${keys('the token', ['access_token', 'token_type', 'expires_in', 'expires_at'], 'body')}
pm.test('it is a Bearer token', () => pm.expect(body.token_type).to.eql('Bearer'));
pm.collectionVariables.set('token_${letter}', body.access_token);
${extra}`,
        description: '`POST /auth/token` (on when `AUTH_DEV_LOGIN=true`, as in the embedded stack): a seller JWT. A fresh seller id every run, so every count below starts from zero.',
    });

const BAD_TOKENS = `
// Bad tokens for "4. Rejections: tokens", made from this one.
const cryptoJs = require('crypto-js');
const b64url = (words) => cryptoJs.enc.Base64.stringify(words).replace(/=+$/, '').replace(/\\+/g, '-').replace(/\\//g, '_');
const encode = (value) => b64url(cryptoJs.enc.Utf8.parse(JSON.stringify(value)));
const decode = (part) => {
    let text = part.replace(/-/g, '+').replace(/_/g, '/');
    while (text.length % 4) text += '=';
    return JSON.parse(cryptoJs.enc.Utf8.stringify(cryptoJs.enc.Base64.parse(text)));
};
const [head, payload, signature] = body.access_token.split('.');
const header = decode(head);
const claims = decode(payload);
pm.test('an HS256 JWT for seller A with exp, iss, aud', () => {
    pm.expect(header.alg).to.eql('HS256');
    pm.expect(claims.sub).to.eql(pm.collectionVariables.get('seller_a'));
    pm.expect(claims).to.include.all.keys('exp', 'iss', 'aud');
});
pm.collectionVariables.set('token_alg_none', encode({ alg: 'none', typ: 'JWT' }) + '.' + payload + '.');
pm.collectionVariables.set('token_tampered', head + '.' + encode({ ...claims, sub: 'someone-else' }) + '.' + signature);
const secret = pm.variables.get('jwt_secret');
const sign = (changed) => {
    const input = head + '.' + encode({ ...claims, ...changed });
    return input + '.' + b64url(cryptoJs.HmacSHA256(input, cryptoJs.enc.Base64.parse(secret)));
};
const now = Math.floor(Date.now() / 1000);
pm.collectionVariables.set('token_resigned', secret ? sign({}) : '');
pm.collectionVariables.set('token_expired', secret ? sign({ iat: now - 7200, nbf: now - 7200, exp: now - 3600 }) : '');
pm.collectionVariables.set('token_wrong_audience', secret ? sign({ aud: 'someone-else' }) : '');`;

const setup = folder(
    '0. Setup',
    'The stack answers; two sellers get tokens from the dev issuer.',
    [
        ready('App Service', 'app_url'),
        ready('Storage Service', 'storage_url'),
        ready('Import API', 'import_url'),
        sellerToken('a', BAD_TOKENS),
        sellerToken('b'),
    ],
);

// ----------------------------------------------------------------- 1. upload flow

const UPLOAD_BODY = `{
  "filename": "{{png_filename}}",
  "content_type": "image/png",
  "size": {{png_size}},
  "sha256": "{{png_sha256}}"
}`;

const PNG_DIGEST = `// The image's size and SHA-256, from the bytes embedded in \`png_base64\`
// (the same bytes as the file the upload sends: ${FIXTURE}).
const cryptoJs = require('crypto-js');
const png = cryptoJs.enc.Base64.parse(pm.collectionVariables.get('png_base64'));
pm.collectionVariables.set('png_size', png.sigBytes);
pm.collectionVariables.set('png_sha256', cryptoJs.SHA256(png).toString(cryptoJs.enc.Hex));`;

const PRODUCT_BODY = `{
  "name": "Swatch poster",
  "description": "Uploaded by the Postman collection",
  "price_minor": 1999,
  "currency": "EUR",
  "image_id": "{{image_id}}"
}`;

const productAsCreated = `const product = pm.response.json();
${keys('the product', PRODUCT_KEYS, 'product')}
pm.test('it is seller A\\'s, with the uploaded image', () => {
    pm.expect(product.seller_id).to.eql(pm.collectionVariables.get('seller_a'));
    pm.expect(product.image_id).to.eql(pm.collectionVariables.get('image_id'));
    pm.expect(product.price_minor).to.eql(1999);
    pm.expect(product.currency).to.eql('EUR');
    pm.expect(product.image_url).to.be.a('string');
});`;

const uploadFlow = folder(
    '1. Upload flow',
    'Token → upload URL (App) → PUT the bytes (Storage) → product (App) → list and read it back.',
    [
        request('Upload URL (POST /uploads)', {
            method: 'POST',
            url: '{{app_url}}/uploads',
            auth: bearer('token_a'),
            body: UPLOAD_BODY,
            pre: PNG_DIGEST,
            test: storeTicket('flow'),
            description: 'Declares the file (name, type, size, SHA-256); the answer is a single-use URL on storage and the headers to send with the bytes.',
        }),
        request('Upload the bytes (PUT upload_url)', {
            method: 'PUT',
            url: '{{flow_upload_url}}',
            body: { file: FIXTURE },
            pre: ticketHeaders('flow'),
            test: `${status(201)}
const image = pm.response.json();
${keys('the image', ['image_id', 'filename', 'content_type', 'size', 'sha256', 'width', 'height', 'storage_path', 'created_at'], 'image')}
pm.test('storage measured the bytes that were declared', () => {
    pm.expect(image.sha256).to.eql(pm.collectionVariables.get('png_sha256'));
    pm.expect(image.size).to.eql(Number(pm.collectionVariables.get('png_size')));
    pm.expect(image.content_type).to.eql('image/png');
    pm.expect([image.width, image.height]).to.eql([16, 16]);
});
pm.collectionVariables.set('image_id', image.image_id);`,
            description: `The bytes of ${FIXTURE} (the body is that file: in Postman, set Settings → General → Working directory to this repository's \`postman/\` folder), straight to storage, which checks size, SHA-256 and type before it stores anything.`,
        }),
        put('The same URL again is refused', '{{flow_upload_url}}', 409, 'upload-already-completed', {
            headersOf: 'flow',
            description: 'An upload URL works once.',
        }),
        request('Create a product (POST /product)', {
            method: 'POST',
            url: '{{app_url}}/product',
            auth: bearer('token_a'),
            headers: [{ key: 'Idempotency-Key', value: '{{idempotency_key}}' }],
            body: PRODUCT_BODY,
            pre: `pm.collectionVariables.set('idempotency_key', pm.variables.replaceIn('{{$guid}}'));`,
            test: `${status(201)}
${productAsCreated}
pm.test('not a replay', () => pm.expect(pm.response.headers.get('Idempotent-Replayed')).to.not.eql('true'));
pm.collectionVariables.set('product_id', product.id);`,
            description: 'With an `Idempotency-Key`: retrying with the same key and body returns this product instead of creating another.',
        }),
        request('Same Idempotency-Key and body: the same product', {
            method: 'POST',
            url: '{{app_url}}/product',
            auth: bearer('token_a'),
            headers: [{ key: 'Idempotency-Key', value: '{{idempotency_key}}' }],
            body: PRODUCT_BODY,
            test: `${status(201)}
${productAsCreated}
pm.test('the first product, replayed', () => {
    pm.expect(product.id).to.eql(pm.collectionVariables.get('product_id'));
    pm.expect(pm.response.headers.get('Idempotent-Replayed')).to.eql('true');
});`,
        }),
        request('Same Idempotency-Key, another body (422 idempotency-key-reused)', {
            method: 'POST',
            url: '{{app_url}}/product',
            auth: bearer('token_a'),
            headers: [{ key: 'Idempotency-Key', value: '{{idempotency_key}}' }],
            body: PRODUCT_BODY.replace('1999', '2999'),
            test: error(422, 'idempotency-key-reused'),
        }),
        request('Your products (GET /products)', {
            url: '{{app_url}}/products?limit=10',
            auth: bearer('token_a'),
            test: `${status(200)}
const page = pm.response.json();
${keys('the page', ['items'], 'page')}
pm.test('one product, the one just created', () => {
    pm.expect(page.items.map((p) => p.id)).to.eql([pm.collectionVariables.get('product_id')]);
    pm.expect(page.next_cursor == null).to.be.true;
});
${keys('the product', PRODUCT_KEYS, 'page.items[0]')}
pm.collectionVariables.set('product_image_url', page.items[0].image_url);`,
        }),
        request('One product (GET /products/{id})', {
            url: '{{app_url}}/products/{{product_id}}',
            auth: bearer('token_a'),
            test: `${status(200)}
${productAsCreated}
pm.test('the product asked for', () => pm.expect(product.id).to.eql(pm.collectionVariables.get('product_id')));`,
        }),
        request('The product\'s image, from its short-lived URL', {
            url: '{{product_image_url}}',
            test: `${status(200)}
pm.test('served as image/png', () => pm.expect(pm.response.headers.get('Content-Type')).to.eql('image/png'));
${bodyHash('png_sha256')}`,
            description: '`image_url` from the listing: a signed storage URL; no token needed.',
        }),
    ],
);

// ----------------------------------------------------------------- 2, 3. imports

/// The demo folder's contents (src/demo.rs): 300 images, 3 PDFs, 2 Google Docs (Drive
/// only), one broken .jpg.
const DEMO = {
    google_drive: { imported: 300, skipped: 5, failed: 1 },
    dropbox: { imported: 300, skipped: 3, failed: 1 },
};

function importFolder(number, title, provider, path, urlVariable) {
    const v = (name) => `${provider}_${name}`;
    const poll = `${title}: poll until finished (GET /imports/{id})`;
    return folder(
        `${number}. Import flow (${title})`,
        `Import the folder in \`${urlVariable}\` → follow it to the end → failed items → images. Run it as a collection (Postman's runner or newman): the poll request repeats itself with \`pm.execution.setNextRequest\`, at most \`poll_max_tries\` times.`,
        [
            request(`${title}: start the import (POST ${path})`, {
                method: 'POST',
                url: `{{import_url}}${path}`,
                auth: bearer('token_a'),
                body: `{ "folder_url": "{{${urlVariable}}}" }`,
                test: `${status(202)}
const job = pm.response.json();
${keys('the import', JOB_KEYS, 'job')}
pm.test('a new ${provider} import of the folder', () => {
    pm.expect(job.provider).to.eql('${provider}');
    pm.expect(job.folder_url).to.eql(pm.variables.get('${urlVariable}'));
    pm.expect(['listing', 'importing']).to.include(job.state);
});
pm.test('Location is the import', () => pm.expect(pm.response.headers.get('Location')).to.eql('/imports/' + job.id));
pm.collectionVariables.set('${v('import_id')}', job.id);
pm.collectionVariables.set('${v('polls')}', 0);`,
            }),
            request(poll, {
                url: `{{import_url}}/imports/{{${v('import_id')}}}`,
                auth: bearer('token_a'),
                pre: `// Wait between polls (not before the first).
if (Number(pm.collectionVariables.get('${v('polls')}')) > 0) {
    setTimeout(() => {}, Number(pm.variables.get('poll_interval_ms')));
}`,
                test: `${status(200)}
const job = pm.response.json();
${keys('the import', JOB_KEYS, 'job')}
const polls = Number(pm.collectionVariables.get('${v('polls')}')) + 1;
pm.collectionVariables.set('${v('polls')}', polls);
const finished = ['completed', 'failed'].includes(job.state);
const maxPolls = Number(pm.variables.get('poll_max_tries'));
if (pm.response.code === 200 && !finished && polls < maxPolls) {
    console.log('${title} import ' + job.state + ': ' + JSON.stringify(job.counts));
    ${NEXT_REQUEST}(pm.info.requestName);
} else {
    pm.test('finished within ' + maxPolls + ' polls', () => pm.expect(finished, 'still ' + job.state).to.be.true);
    pm.test('completed, every file accounted for', () => {
        pm.expect(job.state).to.eql('completed');
        pm.expect(job.finished_at).to.be.a('string');
        const c = job.counts;
        pm.expect(c.in_progress).to.eql(0);
        pm.expect(c.imported).to.be.above(0);
        pm.expect(c.imported + c.skipped + c.failed).to.eql(c.discovered);
    });
    if (pm.variables.get('expect_demo_counts') === 'true') {
        pm.test('the demo folder: ${DEMO[provider].imported} imported, ${DEMO[provider].skipped} skipped, ${DEMO[provider].failed} failed', () => {
            const { imported, skipped, failed } = job.counts;
            pm.expect({ imported, skipped, failed }).to.eql(${js(DEMO[provider])});
        });
    }
}`,
            }),
            ...(provider === 'google_drive' ? [request(`${title}: progress as server-sent events (GET /imports/{id}/events)`, {
                url: `{{import_url}}/imports/{{${v('import_id')}}}/events`,
                auth: bearer('token_a'),
                test: `${status(200)}
pm.test('an event stream', () => pm.expect(pm.response.headers.get('Content-Type')).to.match(/^text\\/event-stream/));
pm.test('a finished import sends one done event with the import', () => {
    const text = pm.response.text();
    pm.expect(text.match(/^event: done$/gm)).to.have.lengthOf(1);
    const data = text.split('\\n').filter((l) => l.startsWith('data: ')).pop().slice(6);
    const job = JSON.parse(data);
    pm.expect(job.id).to.eql(pm.collectionVariables.get('${v('import_id')}'));
    pm.expect(job.state).to.eql('completed');
});`,
            })] : []),
            request(`${title}: failed items (GET /imports/{id}/items?status=failed)`, {
                url: `{{import_url}}/imports/{{${v('import_id')}}}/items?status=failed`,
                auth: bearer('token_a'),
                test: `${status(200)}
const page = pm.response.json();
${keys('the page', ['items'], 'page')}
pm.test('every item failed, with its reason', () => {
    page.items.forEach((item) => {
        pm.expect(item).to.include.all.keys(${ITEM_KEYS.map(js).join(', ')});
        pm.expect(item.status).to.eql('failed');
        pm.expect(item.reason).to.be.a('string').and.not.empty;
    });
});
if (pm.variables.get('expect_demo_counts') === 'true') {
    pm.test('the demo folder: broken-001.jpg, refused by storage (not-an-image)', () => {
        pm.expect(page.items.map((i) => [i.name, i.reason])).to.eql([['broken-001.jpg', 'not-an-image']]);
    });
}`,
            }),
            request(`${title}: images (GET /images?source=${provider})`, {
                url: `{{import_url}}/images?source=${provider}&limit=5`,
                auth: bearer('token_a'),
                test: `${status(200)}
const page = pm.response.json();
${keys('the page', ['items'], 'page')}
pm.test('images from this import', () => {
    pm.expect(page.items).to.not.be.empty;
    pm.expect(page.items.length).to.be.at.most(5);
    page.items.forEach((image) => {
        pm.expect(image).to.include.all.keys(${IMAGE_KEYS.map(js).join(', ')});
        pm.expect(image.source).to.eql('${provider}');
        pm.expect(image.import_id).to.eql(pm.collectionVariables.get('${v('import_id')}'));
        pm.expect(image.mime_type).to.match(/^image\\//);
        pm.expect(image.sha256).to.match(/^[0-9a-f]{64}$/);
    });
});
pm.collectionVariables.set('${v('image_id')}', page.items[0].image_id);
pm.collectionVariables.set('${v('image_sha256')}', page.items[0].sha256);`,
            }),
            request(`${title}: one image (GET /images/{id})`, {
                url: `{{import_url}}/images/{{${v('image_id')}}}`,
                auth: bearer('token_a'),
                test: `${status(200)}
const image = pm.response.json();
${keys('the image', IMAGE_KEYS, 'image')}
pm.test('the image asked for', () => {
    pm.expect(image.image_id).to.eql(pm.collectionVariables.get('${v('image_id')}'));
    pm.expect(image.sha256).to.eql(pm.collectionVariables.get('${v('image_sha256')}'));
});
pm.collectionVariables.set('${v('image_url')}', image.url);`,
            }),
            request(`${title}: the image's bytes, from its signed URL`, {
                url: `{{${v('image_url')}}}`,
                test: `${status(200)}
pm.test('an image', () => pm.expect(pm.response.headers.get('Content-Type')).to.match(/^image\\//));
${bodyHash(v('image_sha256'))}`,
            }),
        ],
        urlVariable === 'demo_dropbox_url'
            ? skipWhen("!pm.variables.get('demo_dropbox_url')", 'demo_dropbox_url is empty')
            : undefined,
    );
}

const driveDemoServed = request('The demo folder is served by the emulator', {
    url: '{{demo_providers_url}}/drive/v3/files/{{drive_folder_id}}?key=demo&fields=id,name,mimeType',
    pre: `${skipWhen("!pm.variables.get('demo_providers_url')", 'demo_providers_url is empty (real providers)')}
const match = /\\/folders\\/([A-Za-z0-9_-]+)/.exec(pm.variables.get('demo_drive_folder_url'));
pm.collectionVariables.set('drive_folder_id', match ? match[1] : '');`,
    test: `${status(200)}
pm.test('a Drive folder', () => {
    const file = pm.response.json();
    pm.expect(file.id).to.eql(pm.collectionVariables.get('drive_folder_id'));
    pm.expect(file.mimeType).to.eql('application/vnd.google-apps.folder');
});`,
    description: 'Google Drive API v3 `files.get` on the emulator started by `up --demo` (any key is accepted). Skipped when `demo_providers_url` is empty.',
});

const driveImport = importFolder(2, 'Google Drive', 'google_drive', '/import/google-drive', 'demo_drive_folder_url');
driveImport.item.unshift(driveDemoServed);
const dropboxImport = importFolder(3, 'Dropbox', 'dropbox', '/import/dropbox', 'demo_dropbox_url');

// ----------------------------------------------------------------- 4. tokens

const tokenRefused = (what, token, slug, extraPre = '') =>
    request(`${what} (401 ${slug})`, {
        url: '{{app_url}}/products',
        auth: token ? bearer(token) : NO_AUTH,
        pre: extraPre || undefined,
        test: unauthorized(slug),
    });

const needsSecret = skipWhen("!pm.variables.get('jwt_secret')", 'jwt_secret is empty');

const tokens = folder(
    '4. Rejections: tokens',
    'Every seller endpoint refuses these with 401, a stable code and a Bearer challenge. The expired and wrong-audience tokens are signed with `jwt_secret` (the embedded stack\'s `JWT_HS256_SECRET`, in `<data dir>/keys.env`); without it they are skipped.',
    [
        request('No token on POST /uploads (401 missing-token)', {
            method: 'POST',
            url: '{{app_url}}/uploads',
            body: UPLOAD_BODY,
            test: unauthorized('missing-token'),
        }),
        request('No token on POST /import/google-drive (401 missing-token)', {
            method: 'POST',
            url: '{{import_url}}/import/google-drive',
            body: '{ "folder_url": "{{demo_drive_folder_url}}" }',
            test: unauthorized('missing-token'),
        }),
        request('Malformed token (401 malformed-token)', {
            url: '{{app_url}}/products',
            headers: [{ key: 'Authorization', value: 'Bearer not.a-jwt' }],
            test: unauthorized('malformed-token'),
        }),
        tokenRefused('alg: none', 'token_alg_none', 'unsupported-algorithm'),
        tokenRefused('Payload changed after signing', 'token_tampered', 'invalid-signature'),
        tokenRefused('Expired token', 'token_expired', 'token-expired', needsSecret),
        tokenRefused('Wrong audience', 'token_wrong_audience', 'invalid-audience', needsSecret),
        request('The same claims signed with jwt_secret are accepted (control)', {
            url: '{{app_url}}/products',
            auth: bearer('token_resigned'),
            pre: needsSecret,
            test: status(200),
            description: 'Shows that the two requests above were refused for their expiry and audience, not for the signing.',
        }),
        request('Dev issuer: invalid seller id (422 invalid-seller-id)', {
            method: 'POST',
            url: '{{app_url}}/auth/token',
            body: { seller_id: 'no spaces allowed' },
            test: error(422, 'invalid-seller-id'),
        }),
    ],
);

// ----------------------------------------------------------------- 5. upload URLs

const uploadRefused = (what, body, code, slug, headers) =>
    request(`${what} (${code} ${slug})`, {
        method: 'POST',
        url: '{{app_url}}/uploads',
        auth: bearer('token_a'),
        body,
        headers,
        test: error(code, slug),
    });

const uploadWith = (field, value) => UPLOAD_BODY.replace(new RegExp(`"${field}": [^\\n]*?(,?)$`, 'm'), `"${field}": ${value}$1`);

const uploadUrls = folder(
    '5. Rejections: upload URLs',
    '`POST /uploads` checks the declaration before storage records anything.',
    [
        uploadRefused('Not JSON to POST /uploads', { raw: 'filename=swatch.png', type: 'application/x-www-form-urlencoded' }, 415, 'json-content-type-required'),
        uploadRefused('Broken JSON', { raw: '{"filename": ', type: 'application/json' }, 400, 'invalid-json'),
        uploadRefused('Content type not an image', uploadWith('content_type', '"application/pdf"'), 422, 'unsupported-content-type'),
        uploadRefused('Size 0', uploadWith('size', '0'), 422, 'invalid-size'),
        uploadRefused('Size over the cap (50 MiB + 1)', uploadWith('size', String(50 * 1024 * 1024 + 1)), 422, 'size-limit-exceeded'),
        uploadRefused('SHA-256 not 64 hex characters', uploadWith('sha256', '"abc123"'), 422, 'invalid-sha256'),
        uploadRefused('File name with a path', uploadWith('filename', '"../../etc/passwd"'), 422, 'invalid-filename'),
        uploadRefused('A field missing', '{ "filename": "{{png_filename}}", "content_type": "image/png", "size": {{png_size}} }', 422, 'invalid-request-body'),
    ],
);

// ----------------------------------------------------------------- 6. the upload itself

const ticketFor = (name, what, body) =>
    request(`Upload URL ${what}`, {
        method: 'POST',
        url: '{{app_url}}/uploads',
        auth: bearer('token_a'),
        body,
        test: storeTicket(name),
    });

const OTHER_BYTES_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'; // SHA-256 of no bytes

const storageRejections = folder(
    '6. Rejections: the upload itself',
    'Storage checks the bytes against what the URL was signed for; nothing is stored when they differ, and the URL stays usable.',
    [
        ticketFor('other', 'for other bytes (declared SHA-256 is not the file\'s)', uploadWith('sha256', `"${OTHER_BYTES_SHA256}"`)),
        put('Empty body', '{{other_upload_url}}', 400, 'empty-body', { body: 'empty', headersOf: 'other' }),
        put('Bytes whose SHA-256 is not the declared one', '{{other_upload_url}}', 422, 'sha256-mismatch', { headersOf: 'other' }),
        ticketFor('jpeg', 'declaring image/jpeg for the PNG', uploadWith('content_type', '"image/jpeg"').replace('{{png_filename}}', 'swatch.jpg')),
        put('A PNG to a URL signed for image/jpeg', '{{jpeg_upload_url}}', 415, 'content-type-mismatch', { headersOf: 'jpeg' }),
        put('Content-Type header other than the signed type', '{{jpeg_upload_url}}', 415, 'content-type-header-mismatch', {
            body: 'early',
            description: 'Sends `Content-Type: image/png` to the URL signed for image/jpeg.',
        }),
        put('Another upload\'s URL token', '{{storage_url}}/uploads/{{other_upload_id}}?{{jpeg_token_query}}', 403, 'token-upload-mismatch', {
            body: 'early',
            headersOf: 'jpeg',
            pre: "pm.collectionVariables.set('jpeg_token_query', pm.collectionVariables.get('jpeg_upload_url').split('?')[1]);",
        }),
        put('No URL token', '{{storage_url}}/uploads/{{other_upload_id}}', 403, 'token-malformed', { body: 'early', headersOf: 'other' }),
    ],
);

// ----------------------------------------------------------------- 7. products

const productRefused = (what, token, imageId, code, slug, change = (b) => b) =>
    request(`${what} (${code} ${slug})`, {
        method: 'POST',
        url: '{{app_url}}/product',
        auth: bearer(token),
        body: change(PRODUCT_BODY.replace('{{image_id}}', imageId)),
        test: error(code, slug),
    });

const products = folder(
    '7. Rejections: products',
    'A product takes only a complete image of the same seller; prices, currencies, names and ids are checked.',
    [
        productRefused('Another seller\'s image', 'token_b', '{{image_id}}', 422, 'image-not-found'),
        productRefused('Unknown image id', 'token_a', '{{$randomUUID}}', 422, 'image-not-found'),
        productRefused('An upload that never completed', 'token_a', '{{other_upload_id}}', 422, 'image-not-found'),
        productRefused('Malformed image id', 'token_a', 'not-a-uuid', 422, 'invalid-image-id'),
        productRefused('Negative price', 'token_a', '{{image_id}}', 422, 'invalid-price', (b) => b.replace('1999', '-1')),
        productRefused('Unknown currency', 'token_a', '{{image_id}}', 422, 'unknown-currency', (b) => b.replace('"EUR"', '"ABC"')),
        productRefused('201-character name', 'token_a', '{{image_id}}', 422, 'invalid-name', (b) => b.replace('Swatch poster', 'n'.repeat(201))),
        productRefused('Not JSON to POST /product', 'token_a', '{{image_id}}', 415, 'json-content-type-required', (b) => ({ raw: b, type: 'text/plain' })),
        request('Another seller\'s product (404 product-not-found)', {
            url: '{{app_url}}/products/{{product_id}}',
            auth: bearer('token_b'),
            test: error(404, 'product-not-found'),
        }),
        request('Malformed product id (400 invalid-product-id)', {
            url: '{{app_url}}/products/not-a-uuid',
            auth: bearer('token_a'),
            test: error(400, 'invalid-product-id'),
        }),
        request('Bad page size (400 invalid-limit)', {
            url: '{{app_url}}/products?limit=0',
            auth: bearer('token_a'),
            test: error(400, 'invalid-limit'),
        }),
    ],
);

// ----------------------------------------------------------------- 8. imports

const importRefused = (what, path, folderUrl, slug) =>
    request(`${what} (422 ${slug})`, {
        method: 'POST',
        url: `{{import_url}}${path}`,
        auth: bearer('token_b'),
        body: { folder_url: folderUrl },
        test: error(422, slug),
    });

const importGet = (what, path, token, code, slug) =>
    request(`${what} (${code} ${slug})`, { url: `{{import_url}}${path}`, auth: bearer(token), test: error(code, slug) });

const imports = folder(
    '8. Rejections: imports and images',
    'Folder links are parsed, never fetched: other hosts and schemes are refused, and a folder the provider does not share is a 422 at once. Another seller\'s imports and images do not exist for you.',
    [
        importRefused('Not a Drive or Dropbox link', '/import/google-drive', 'https://example.com/drive/folders/abc', 'invalid-folder-url'),
        importRefused('A javascript: link', '/import/google-drive', 'javascript:alert(1)', 'invalid-folder-url'),
        importRefused('A Dropbox link to the Drive import', '/import/google-drive', '{{demo_dropbox_url}}', 'invalid-folder-url'),
        importRefused('A Drive folder nobody shared', '/import/google-drive', 'https://drive.google.com/drive/folders/1NoSuchFolderAnywhere0000000000000', 'folder-not-public'),
        request('Not JSON to POST /import/google-drive (415 json-content-type-required)', {
            method: 'POST',
            url: '{{import_url}}/import/google-drive',
            auth: bearer('token_b'),
            body: { raw: 'folder_url={{demo_drive_folder_url}}', type: 'application/x-www-form-urlencoded' },
            test: error(415, 'json-content-type-required'),
        }),
        importGet('Malformed import id', '/imports/not-a-uuid', 'token_a', 400, 'invalid-import-id'),
        importGet('Another seller\'s import', '/imports/{{google_drive_import_id}}', 'token_b', 404, 'import-not-found'),
        importGet('Unknown item status', '/imports/{{google_drive_import_id}}/items?status=bogus', 'token_a', 400, 'invalid-status'),
        importGet('Another seller\'s image', '/images/{{google_drive_image_id}}', 'token_b', 404, 'image-not-found'),
        importGet('Unknown image source', '/images?source=flickr', 'token_a', 400, 'invalid-source'),
    ],
);

// ----------------------------------------------------------------- 9. nothing created

const emptyList = (what, url) =>
    request(what, {
        url,
        auth: bearer('token_b'),
        test: `${status(200)}
pm.test('empty', () => pm.expect(pm.response.json().items).to.eql([]));`,
    });

const nothingCreated = folder(
    '9. The rejections created nothing',
    'Seller B, who was only ever refused, has no product, import or image; seller A still has exactly one product.',
    [
        emptyList('Seller B: no products', '{{app_url}}/products'),
        emptyList('Seller B: no imports', '{{import_url}}/imports'),
        emptyList('Seller B: no images', '{{import_url}}/images'),
        request('Seller A: still one product', {
            url: '{{app_url}}/products',
            auth: bearer('token_a'),
            test: `${status(200)}
pm.test('only the product of the upload flow', () => pm.expect(pm.response.json().items.map((p) => p.id)).to.eql([pm.collectionVariables.get('product_id')]));`,
        }),
    ],
);

// ----------------------------------------------------------------- the collection

const ENVELOPE = `// Every error, from every service, is {"error": {"code", "message"}}.
if (pm.response.code >= 400) {
    pm.test('error envelope {error: {code, message}}', () => {
        const error = pm.response.json().error;
        pm.expect(error.code).to.match(/^[a-z0-9]+(-[a-z0-9]+)*$/);
        pm.expect(error.message).to.be.a('string').and.not.empty;
    });
}`;

function collection() {
    const png = readFileSync(join(here, FIXTURE));
    return {
        info: {
            name: 'Vitrine',
            description: [
                'Both flows of Vitrine and their main rejections, each request with tests.',
                '',
                '- **Upload**: token → upload URL → PUT the bytes → product → list.',
                '- **Import**: Google Drive and Dropbox folder → poll until finished → failed items → images.',
                '- **Rejections**: tokens, upload declarations, the bytes themselves, products, folder links, other sellers\' data; each with its status and stable error code.',
                '',
                'Run it as a whole (Postman\'s collection runner, or newman: see `postman/README.md`) with the environment `vitrine.postman_environment.json` against `cargo run --release -- up --demo`.',
                'Generated by `postman/build.mjs`: edit that, then `node postman/build.mjs`.',
            ].join('\n'),
            schema: 'https://schema.getpostman.com/json/collection/v2.1.0/collection.json',
        },
        event: [{ listen: 'test', script: { type: 'text/javascript', exec: lines(ENVELOPE) } }],
        variable: [
            { key: 'png_filename', value: 'swatch.png', type: 'string' },
            { key: 'png_base64', value: png.toString('base64'), type: 'string', description: `The bytes of ${FIXTURE}, the image the upload sends: its size and SHA-256 are computed from these.` },
        ],
        item: [setup, uploadFlow, driveImport, dropboxImport, tokens, uploadUrls, storageRejections, products, imports, nothingCreated],
    };
}

function environment() {
    return {
        name: 'Vitrine (local embedded stack)',
        values: ENVIRONMENT.map(([key, value, description, type = 'default']) => ({ key, value, type, enabled: true, description })),
        _postman_variable_scope: 'environment',
    };
}

const outputs = [
    [COLLECTION_FILE, collection()],
    [ENVIRONMENT_FILE, environment()],
];
const check = process.argv.includes('--check');
let stale = false;
for (const [file, value] of outputs) {
    const text = JSON.stringify(value, null, 2) + '\n';
    const path = join(here, file);
    if (check) {
        let current = '';
        try {
            current = readFileSync(path, 'utf8');
        } catch {
            // missing: stale
        }
        if (current !== text) {
            console.error(`postman/${file} is stale: run \`node postman/build.mjs\``);
            stale = true;
        }
    } else {
        writeFileSync(path, text);
        console.log(`wrote postman/${file}`);
    }
}
process.exit(stale ? 1 : 0);
