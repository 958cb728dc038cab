"""Work started by time and by limits: durable queues and cron schedules."""
