// aedes on 127.0.0.1:PORT for the broker conformance tests: node broker.js PORT
// (aedes speaks MQTT 3.1.1; the unit falls back to it). Prints "listening" once ready.
const { Aedes } = require('aedes')
const net = require('net')
const port = parseInt(process.argv[2], 10)
Aedes.createBroker().then((aedes) => {
  const server = net.createServer(aedes.handle)
  server.listen(port, '127.0.0.1', () => { console.log('listening ' + port) })
}).catch((err) => { console.error(err); process.exit(1) })
