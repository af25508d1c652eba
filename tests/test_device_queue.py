"""One device, one frame at a time: arrival order, the wait, and the backlog the planner sees."""

import threading

import pytest

from adaptinf.daemon.device_queue import DeviceQueue


class FakeClock:
    now = 0.0

    def __call__(self):
        return self.now


def test_frames_take_the_device_in_arrival_order_one_at_a_time():
    queue, order, inside = DeviceQueue(), [], []
    first = queue.slot(0.1)
    first.__enter__()                       # the device is busy

    def frame(k):
        with queue.slot(0.05):
            inside.append(k)
            assert len(inside) == 1         # never two at once
            order.append(k)
            inside.remove(k)

    threads = []
    for k in range(5):
        t = threading.Thread(target=frame, args=(k,))
        t.start()
        threads.append(t)
        while queue.depth() < k + 2:        # the frame is queued before the next arrives
            threading.Event().wait(0.001)
    first.__exit__(None, None, None)
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_the_backlog_is_the_predicted_work_ahead_with_the_running_frames_remainder():
    clock = FakeClock()
    queue = DeviceQueue(clock)
    assert queue.backlog_s() == 0.0
    running = queue.slot(0.1)
    running.__enter__()
    clock.now = 0.03
    assert queue.backlog_s() == pytest.approx(0.07)
    waiter = threading.Thread(target=lambda: queue.slot(0.05).__enter__())
    waiter.start()
    while queue.depth() < 2:
        threading.Event().wait(0.001)
    assert queue.backlog_s() == pytest.approx(0.12)
    clock.now = 0.5                          # overran its prediction: nothing more is assumed left
    assert queue.backlog_s() == pytest.approx(0.05)
    running.__exit__(None, None, None)
    waiter.join(5)
