// assay's JavaScript test harness: `node assay_harness.js`, used for JavaScript and TypeScript.
// stdin: {"nonce", "code" | "code_file", "tests" | "tests_file"}. Files (tsc's output) are read
// and the tests' file deleted before the program runs. The program runs as a global script; the
// tests run in a strict-mode function whose `require("assert")` and `__assay(line)` are the
// harness's own assertions (the runner rewrote each `assert` call to `__assay(LINE)`), built on
// references taken before the program could patch anything. Records go to stdout; the
// program's console and process.stdout write to stderr.
'use strict';
const fs = require('fs');
const vm = require('vm');
const util = require('util');

const writeSync = fs.writeSync;
const readFileSync = fs.readFileSync;
const objectIs = Object.is;
const getPrototypeOf = Object.getPrototypeOf;
const objectKeys = Object.keys;
const hasOwn = Object.prototype.hasOwnProperty;
const isArray = Array.isArray;
const { isProxy, isMap, isSet, isDate, isRegExp } = util.types;
const mapEntries = Map.prototype.entries;
const setValues = Set.prototype.values;
const mapGet = Map.prototype.get;
const mapHas = Map.prototype.has;
const dateTime = Date.prototype.getTime;
const regExpString = RegExp.prototype.toString;
const call = Function.prototype.call.bind(Function.prototype.call);
const jsonStringify = JSON.stringify;
const processExit = process.exit;
const StringOf = String;

const payload = JSON.parse(readFileSync(0, 'utf8'));
const out = 1; // the program's console is moved to stderr below; it cannot forge the nonce
fs.closeSync(0);
fs.openSync('/dev/null', 'r'); // takes fd 0
const prefix = `\n@@assay:${payload.nonce}` + ' ';
delete payload.nonce;

function emit(record) {
  writeSync(out, prefix + jsonStringify(record) + '\n');
}

const seen = new Set();
const failed = new Set();
function record(line, ok, message) {
  if (failed.has(line)) return;
  if (!ok) {
    failed.add(line);
    emit({ t: 'test', line, ok: false, msg: StringOf(message).slice(0, 2000) });
  } else if (!seen.has(line)) {
    seen.add(line);
    emit({ t: 'test', line, ok: true, msg: '' });
  }
}

function describe(value) {
  try {
    return util.inspect(value, { depth: 3, breakLength: Infinity }).slice(0, 300);
  } catch (error) {
    return '<uninspectable>';
  }
}

function deepEqual(a, b, strict, depth) {
  if (depth > 200) return false;
  if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) {
    if (typeof a === 'function' || typeof b === 'function') return a === b;
    return strict ? objectIs(a, b) : a == b || (a !== a && b !== b); // eslint-disable-line eqeqeq
  }
  if (isProxy(a) || isProxy(b)) return false; // a proxy can answer anything
  if (strict && getPrototypeOf(a) !== getPrototypeOf(b)) return false;
  if (isArray(a) !== isArray(b)) return false;
  if (isDate(a) || isDate(b)) return isDate(a) && isDate(b) && call(dateTime, a) === call(dateTime, b);
  if (isRegExp(a) || isRegExp(b)) return isRegExp(a) && isRegExp(b) && call(regExpString, a) === call(regExpString, b);
  if (isMap(a) || isMap(b)) {
    if (!(isMap(a) && isMap(b)) || a.size !== b.size) return false;
    for (const [key, value] of call(mapEntries, a)) {
      if (!call(mapHas, b, key) || !deepEqual(value, call(mapGet, b, key), strict, depth + 1)) return false;
    }
    return true;
  }
  if (isSet(a) || isSet(b)) {
    if (!(isSet(a) && isSet(b)) || a.size !== b.size) return false;
    const rest = [...call(setValues, b)];
    for (const value of call(setValues, a)) {
      const index = rest.findIndex((other) => deepEqual(value, other, strict, depth + 1));
      if (index < 0) return false;
      rest.splice(index, 1);
    }
    return true;
  }
  const keysA = objectKeys(a);
  const keysB = objectKeys(b);
  if (keysA.length !== keysB.length) return false;
  for (const key of keysA) {
    if (!call(hasOwn, b, key) || !deepEqual(a[key], b[key], strict, depth + 1)) return false;
  }
  return true;
}

function assertions(line) {
  const check = (ok, message, fallback) => record(line, ok, message === undefined ? fallback : message);
  const assert = (value, message) => check(!!value, message, `expected a truthy value, got ${describe(value)}`);
  assert.ok = assert;
  assert.equal = (a, b, m) => check(a == b, m, `${describe(a)} == ${describe(b)}`); // eslint-disable-line eqeqeq
  assert.notEqual = (a, b, m) => check(a != b, m, `${describe(a)} != ${describe(b)}`); // eslint-disable-line eqeqeq
  assert.strictEqual = (a, b, m) => check(objectIs(a, b), m, `${describe(a)} === ${describe(b)}`);
  assert.notStrictEqual = (a, b, m) => check(!objectIs(a, b), m, `${describe(a)} !== ${describe(b)}`);
  assert.deepEqual = (a, b, m) => check(deepEqual(a, b, false, 0), m, `${describe(a)} deep-equals ${describe(b)}`);
  assert.deepStrictEqual = (a, b, m) => check(deepEqual(a, b, true, 0), m, `${describe(a)} deep-strict-equals ${describe(b)}`);
  assert.notDeepEqual = (a, b, m) => check(!deepEqual(a, b, false, 0), m, 'values are deeply equal');
  assert.notDeepStrictEqual = (a, b, m) => check(!deepEqual(a, b, true, 0), m, 'values are deeply equal');
  assert.throws = (fn, _expected, m) => {
    try {
      fn();
    } catch (error) {
      return check(true, m, '');
    }
    return check(false, typeof _expected === 'string' ? _expected : m, 'expected the function to throw');
  };
  assert.doesNotThrow = (fn, m) => {
    try {
      fn();
      check(true, m, '');
    } catch (error) {
      check(false, m, `threw ${describe(error)}`);
    }
  };
  assert.fail = (m) => check(false, m, 'assert.fail');
  assert.strict = assert;
  return assert;
}

const harnessRequire = require;
function testsRequire(name) {
  if (name === 'assert' || name === 'node:assert' || name === 'assert/strict' || name === 'node:assert/strict') {
    return assertions(0);
  }
  return harnessRequire(name);
}

let code = payload.code;
let tests = payload.tests;
if (payload.code_file) code = readFileSync(payload.code_file, 'utf8');
if (payload.tests_file) {
  tests = readFileSync(payload.tests_file, 'utf8');
  fs.unlinkSync(payload.tests_file);
}
const testsFunction = vm.runInThisContext(
  `(function (__assay, require, module, exports) { 'use strict';\n${tests}\n})`,
  { filename: 'tests.js', lineOffset: -1 },
);

globalThis.console = new console.Console(process.stderr, process.stderr);
process.stdout.write = process.stderr.write.bind(process.stderr);
globalThis.require = harnessRequire;
globalThis.module = { exports: {} };
globalThis.exports = globalThis.module.exports;
let program;
try {
  program = new vm.Script(code, { filename: 'solution.js' });
} catch (error) {
  emit({ t: 'compile_error', msg: describe(error) });
  emit({ t: 'done' });
  processExit(0);
}
try {
  program.runInThisContext();
} catch (error) {
  emit({ t: 'fatal', phase: 'load', msg: `the program raised ${describe(error)} when loaded` });
  emit({ t: 'done' });
  processExit(0);
}
try {
  testsFunction(assertions, testsRequire, { exports: {} }, {});
} catch (error) {
  emit({ t: 'fatal', msg: `the tests stopped: ${describe(error)}` });
}
emit({ t: 'done' });
processExit(0);
