// Runs web-push-testing (a Web Push service that checks VAPID and decrypts messages) on
// 127.0.0.1 only: its own CLI listens on every interface. Prints "listening on <url>".
// Usage: node web-push-testing.js [port]   (0 or none: a free port)
'use strict';

const {PushApiModel} = require('web-push-testing/src/PushApiModel');
const WebPushTestingServer = require('web-push-testing/src/server');

const model = new PushApiModel();
const server = new WebPushTestingServer(model, 0);
server.setRequestHandlers();
const listener = server._app.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  const url = 'http://127.0.0.1:' + listener.address().port;
  // Subscriptions' endpoints name this address, not "localhost" (which may resolve to ::1).
  model.notifyUrl = url + '/notify/';
  console.log('listening on ' + url);
});
listener.on('error', (err) => {
  console.error(err);
  process.exit(1);
});
