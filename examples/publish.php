<?php
// Publish to herald from a PHP main site (curl extension).
//
//   php examples/publish.php "Order 17 is ready" 63

function herald_notify($message, $id = null, $channel = null, $url = 'http://127.0.0.1:8001/') {
    $body = ['message' => $message];
    if ($id !== null) { $body['id'] = (string) $id; }
    if ($channel !== null) { $body['channel'] = $channel; }
    $headers = ['Content-Type: application/json'];
    if (getenv('HERALD_KEY')) { $headers[] = 'Authorization: Bearer ' . getenv('HERALD_KEY'); }
    $ch = curl_init($url);
    curl_setopt_array($ch, [
        CURLOPT_POST => true,
        CURLOPT_POSTFIELDS => json_encode($body),
        CURLOPT_HTTPHEADER => $headers,
        CURLOPT_RETURNTRANSFER => true,
        CURLOPT_TIMEOUT => 2,
    ]);
    $reply = curl_exec($ch);
    curl_close($ch);
    return json_decode($reply, true);
}

if (PHP_SAPI === 'cli' && isset($argv[1])) {
    var_dump(herald_notify($argv[1], $argv[2] ?? null));
}
