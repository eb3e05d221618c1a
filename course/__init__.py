"""The course machinery: lab generation, grading, feedback and progress."""
