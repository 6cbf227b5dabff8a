<?php
// Publish to herald from a PHP main site (curl extension).
//
//   php examples/publish.php "Order 17 is ready" 63
//
// HERALD_URL names herald (default http://127.0.0.1:8001/),
// HERALD_RETRY_BASE_MS the first wait before a retry (default 200); the
// waits double up to 25 times it (5 s), the longest any wait may be, a
// Retry-After's included.

// Publishes once: every attempt carries the same Idempotency-Key, so a
// retry after a 504 or a lost connection is never delivered twice.
function herald_notify($message, $id = null, $channel = null,
                       $url = 'http://127.0.0.1:8001/', $attempts = 5, $base_ms = 200) {
    $body = ['message' => $message];
    if ($id !== null) { $body['id'] = (string) $id; }
    if ($channel !== null) { $body['channel'] = $channel; }
    $headers = ['Content-Type: application/json', 'Idempotency-Key: ' . bin2hex(random_bytes(16))];
    if (getenv('HERALD_KEY')) { $headers[] = 'Authorization: Bearer ' . getenv('HERALD_KEY'); }
    for ($attempt = 1; ; $attempt++) {
        $retry_after = null;
        $ch = curl_init($url);
        curl_setopt_array($ch, [
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => json_encode($body),
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_TIMEOUT => 5,
            CURLOPT_HEADERFUNCTION => function ($ch, $line) use (&$retry_after) {
                if (preg_match('/^Retry-After:\s*(\d+)/i', $line, $m)) { $retry_after = (int) $m[1]; }
                return strlen($line);
            },
        ]);
        $reply = curl_exec($ch);
        $status = curl_getinfo($ch, CURLINFO_RESPONSE_CODE); // 0: refused, reset or timed out
        $error = curl_error($ch);
        if ($status >= 200 && $status < 300) {
            return json_decode($reply, true); // ['delivered' => N or null, 'seq' => S, ...]
        }
        // 503: not published; 504 or no answer: perhaps, so only with the same key.
        if (!in_array($status, [0, 503, 504], true) || $attempt >= $attempts) {
            throw new RuntimeException($status ? "herald: $status $reply" : "herald: $error");
        }
        $cap_ms = 25 * $base_ms; // 5 s: the longest wait, even when Retry-After asks more
        $delay = min($base_ms * 2 ** ($attempt - 1), $cap_ms);
        $wait_ms = $retry_after !== null ? min(1000 * $retry_after, $cap_ms)
                                         : intdiv($delay, 2) + random_int(0, intdiv($delay, 2));
        usleep(1000 * $wait_ms);
    }
}

if (PHP_SAPI === 'cli' && isset($argv[1])) {
    $url = getenv('HERALD_URL') ?: 'http://127.0.0.1:8001/';
    $base_ms = (int) (getenv('HERALD_RETRY_BASE_MS') ?: 200);
    try {
        echo json_encode(herald_notify($argv[1], $argv[2] ?? null, null, $url, 5, $base_ms)), "\n";
    } catch (RuntimeException $e) {
        fwrite(STDERR, $e->getMessage() . "\n");
        exit(1);
    }
}
