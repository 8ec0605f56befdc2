// A loopback OpenAI-compatible chat server that answers at once, for docs/benchmarks.md:
// `node loopback-server.js 18181`. Answers "Answer: N" where N is the last number of the last
// message, as JSON or (when the request asks to stream) as server-sent events.
const http = require('http');
const port = Number(process.argv[2] || 18181);
let served = 0;
http
  .createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      served += 1;
      let request = {};
      try {
        request = JSON.parse(body);
      } catch (e) {}
      const messages = request.messages || [];
      const last = messages.length ? String(messages[messages.length - 1].content) : '';
      const numbers = last.match(/\d+/g);
      const content = `Answer: ${numbers ? numbers[numbers.length - 1] : 0}`;
      const usage = { prompt_tokens: 20, completion_tokens: 3, total_tokens: 23 };
      if (request.stream) {
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        const chunk = (delta, finish) =>
          `data: ${JSON.stringify({ id: 'b', object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
        res.end(
          chunk({ role: 'assistant', content }, null) +
            chunk({}, 'stop') +
            `data: ${JSON.stringify({ id: 'b', object: 'chat.completion.chunk', choices: [], usage })}\n\ndata: [DONE]\n\n`,
        );
      } else {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(
          JSON.stringify({
            id: 'b',
            object: 'chat.completion',
            model: request.model || 'bench',
            choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
            usage,
          }),
        );
      }
    });
  })
  .listen(port, '127.0.0.1', () => console.error(`listening on 127.0.0.1:${port}`));
process.on('SIGTERM', () => {
  console.error(`served ${served} requests`);
  process.exit(0);
});
