// Which backend runs: decided here and nowhere else. WebGPU when an adapter exists, else WASM
// (threaded when the page is cross-origin isolated), else the server. A backend that fails to
// start or to run falls through to the next, and the reason is kept.

export const ORDER = ['webgpu', 'wasm', 'server'];

/** Backends to try, in order, for a preference: 'auto' tries all that can exist here; a named
 * one is tried alone, so that a test or a user who asks for it sees it run or fail. */
export async function candidates(preference, serverUrl) {
  if (preference !== 'auto') {
    if (!ORDER.includes(preference)) throw new Error(`unknown backend ${preference}; choose auto, ${ORDER.join(', ')}`);
    return [preference];
  }
  const list = [];
  if (await webgpuAdapter()) list.push('webgpu');
  list.push('wasm');
  if (serverUrl) list.push('server');
  return list;
}

export async function webgpuAdapter() {
  try {
    return self.navigator?.gpu ? await navigator.gpu.requestAdapter() : null;
  } catch {
    return null;
  }
}

/** WASM threads: several only when cross-origin isolated (without it a request for 2 threads
 * silently runs 1, so we ask for 1 and report 1). */
export function wasmThreads() {
  return self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
}
